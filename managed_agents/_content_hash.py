"""Content addresses: the same JSON value always gets the same reference, in workers and workflows.

Pure (``json`` and ``hashlib`` only), so workflow code can compute a reference the store will
agree with, without a round trip.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_ref(value: Any) -> str:
    """The store's reference for a JSON value (an agent definition, a blob)."""
    return sha256(canonical_json(value))
