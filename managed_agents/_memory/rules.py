"""Managed Agents' rules and limits for memory stores and memories, as validation functions.

Each function returns the value to store or raises :class:`InvalidMemoryRequest` (or
:class:`MemoryLimitExceeded`) naming the field and the rule.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from managed_agents._memory.errors import InvalidMemoryRequest, MemoryLimitExceeded

MAX_CONTENT_BYTES = 102_400
MAX_MEMORIES_PER_STORE = 2_000
MAX_PATH_BYTES = 1_024
MAX_PATH_SEGMENTS = 20
MAX_NAME_CHARS = 255
MAX_DESCRIPTION_CHARS = 1_024
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_PAGE_LIMIT = 100
MAX_FULL_VIEW_PAGE = 20
MAX_INSTRUCTIONS_CHARS = 4_096
MAX_STORES_PER_SESSION = 8


def content_sha256(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _forbidden_path_char(ch: str) -> bool:
    # Control (Cc), format (Cf) and surrogate (Cs) characters, and the line/paragraph separators.
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs") or ch in ("\u2028", "\u2029")


def validate_path(path: Any, field: str = "path") -> str:
    """A memory path: ``/a/b.md``, 1-20 segments, NFC, at most 1,024 UTF-8 bytes.

    Segments can't be empty, ``.`` or ``..``; control and format characters, U+2028/U+2029 and
    backslashes are refused. Paths are not normalised here: a path that is not in NFC is rejected
    (use :func:`normalize_path` first for names coming from a filesystem).
    """
    if not isinstance(path, str):
        raise InvalidMemoryRequest(field, "must be a string")
    if not path.startswith("/"):
        raise InvalidMemoryRequest(field, f"must start with '/' (got {path!r})")
    bad = next((ch for ch in path if _forbidden_path_char(ch)), None)
    if bad is not None:
        raise InvalidMemoryRequest(
            field, f"must not contain control or format characters (found U+{ord(bad):04X} in {path!r})"
        )
    if "\\" in path:
        raise InvalidMemoryRequest(field, f"must not contain a backslash (got {path!r})")
    if not unicodedata.is_normalized("NFC", path):
        raise InvalidMemoryRequest(field, f"must be in Unicode Normalization Form C (NFC) (got {path!r})")
    size = len(path.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        raise InvalidMemoryRequest(field, f"must be at most {MAX_PATH_BYTES} bytes in UTF-8 (got {size})")
    segments = path[1:].split("/")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise InvalidMemoryRequest(field, f"must have at most {MAX_PATH_SEGMENTS} segments (got {len(segments)})")
    for segment in segments:
        if segment == "":
            raise InvalidMemoryRequest(field, f"must not have an empty segment ('//' or a trailing '/') in {path!r}")
        if segment in (".", ".."):
            raise InvalidMemoryRequest(field, f"must not have a '{segment}' segment (got {path!r})")
    return path


def normalize_path(path: str) -> str:
    """NFC-normalise a path (e.g. a file name read from a mount) and give it a leading ``/``."""
    path = unicodedata.normalize("NFC", path)
    return path if path.startswith("/") else "/" + path


def validate_path_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise InvalidMemoryRequest("path_prefix", "must be a string")
    if not (prefix.startswith("/") and prefix.endswith("/")):
        raise InvalidMemoryRequest("path_prefix", f"must start and end with '/', such as '/notes/' (got {prefix!r})")
    if prefix != "/":
        validate_path(prefix[:-1], "path_prefix")
    return prefix


def validate_content(content: Any, field: str = "content") -> tuple[str, str, int]:
    """The content, its SHA-256 and its size in bytes."""
    if not isinstance(content, str):
        raise InvalidMemoryRequest(field, "must be a string (pass '' for an empty memory)")
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidMemoryRequest(field, f"must be valid UTF-8 text ({err.reason} at index {err.start})") from None
    if len(data) > MAX_CONTENT_BYTES:
        raise MemoryLimitExceeded(
            field,
            f"is {len(data):,} bytes in UTF-8; the maximum is {MAX_CONTENT_BYTES:,} bytes (100 kB)",
            limit=MAX_CONTENT_BYTES,
        )
    if "\x00" in content:
        raise InvalidMemoryRequest(field, "must not contain NUL (U+0000) characters: memories are text")
    return content, hashlib.sha256(data).hexdigest(), len(data)


def validate_sha256(value: Any, field: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise InvalidMemoryRequest(field, f"must be 64 lowercase hexadecimal characters (got {value!r})")
    return value


def validate_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str):
        raise InvalidMemoryRequest(field, "must be a string")
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise InvalidMemoryRequest(field, f"must be 1 to {MAX_NAME_CHARS} characters long (got {len(name)})")
    bad = next((ch for ch in name if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise InvalidMemoryRequest(field, f"must not contain control characters (found U+{ord(bad):04X})")
    return name


def validate_description(description: Any, field: str = "description") -> str:
    if not isinstance(description, str):
        raise InvalidMemoryRequest(field, "must be a string")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidMemoryRequest(
            field, f"must be at most {MAX_DESCRIPTION_CHARS} characters long (got {len(description)})"
        )
    return description


def validate_metadata(metadata: Mapping[Any, Any]) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        raise InvalidMemoryRequest("metadata", "must be an object of string keys and string values")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise InvalidMemoryRequest(
                "metadata", f"keys must be 1 to {MAX_METADATA_KEY_CHARS} characters (got {key!r})"
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidMemoryRequest(
                f"metadata.{key}", f"must be a string of at most {MAX_METADATA_VALUE_CHARS} characters"
            )
        out[key] = value
    if len(out) > MAX_METADATA_PAIRS:
        raise InvalidMemoryRequest("metadata", f"can hold at most {MAX_METADATA_PAIRS} pairs (got {len(out)})")
    return out


def apply_metadata_patch(current: Mapping[str, str], patch: Mapping[Any, Any]) -> dict[str, str]:
    """Update semantics: a string adds or replaces a key, ``None`` removes it, others are kept."""
    if not isinstance(patch, Mapping):
        raise InvalidMemoryRequest("metadata", "must be an object of string keys and string or null values")
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return validate_metadata(merged)


def validate_limit(limit: Any, view: str = "basic") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidMemoryRequest("limit", f"must be an integer from 1 to {MAX_PAGE_LIMIT} (got {limit!r})")
    return min(limit, MAX_FULL_VIEW_PAGE) if view == "full" else limit


def validate_view(view: Any) -> str:
    if view not in ("basic", "full"):
        raise InvalidMemoryRequest("view", f"must be 'basic' or 'full' (got {view!r})")
    return str(view)


def memory_store_slug(name: str) -> str:
    """The directory name of a store under ``/mnt/memory/``: the name lowercased, every run of
    characters other than ASCII letters and digits replaced by one hyphen (edge hyphens dropped)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "memory"
