"""Typed errors of the memory service.

Every error is a :class:`MemoryStoreError` with an HTTP-like ``status`` (400, 404 or 409) and the
Managed Agents ``error_type`` an API server would put in ``{"type": "error", "error": {...}}``, so a
future HTTP layer (and the CLI) can map them without string matching.
"""

from __future__ import annotations

from typing import Any


class MemoryStoreError(Exception):
    """Base class of every error the memory service raises on purpose."""

    status: int = 400
    error_type: str = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_error_body(self) -> dict[str, Any]:
        """The API's error response body (``types/shared/error_response.py``), without ``request_id``."""
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}


# --- 400 ------------------------------------------------------------------------------------------


class InvalidMemoryRequest(MemoryStoreError):
    """A parameter breaks a rule (path syntax, sizes, name, metadata, page cursor...). HTTP 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class MemoryLimitExceeded(InvalidMemoryRequest):
    """A Managed Agents limit: content > 102,400 bytes, or a 2,001st memory in a store. HTTP 400."""

    def __init__(self, field: str, message: str, *, limit: int) -> None:
        super().__init__(field, message)
        self.limit = limit


class MemoryStoreArchived(MemoryStoreError):
    """Writing to (or updating) an archived store. HTTP 400."""

    def __init__(self, memory_store_id: str) -> None:
        super().__init__(
            f"memory store {memory_store_id} is archived: its memories and the store itself can no longer be "
            "created or updated (they can still be read and deleted, and versions redacted)"
        )
        self.memory_store_id = memory_store_id


class MemoryVersionNotRedactable(MemoryStoreError):
    """Redacting the version that holds a live memory's current content. HTTP 400."""

    def __init__(self, version_id: str, memory_id: str) -> None:
        super().__init__(
            f"memory version {version_id} is the current version of memory {memory_id} and cannot be redacted: "
            "update or delete the memory first"
        )
        self.version_id = version_id
        self.memory_id = memory_id


# --- 404 ------------------------------------------------------------------------------------------


class MemoryResourceNotFound(MemoryStoreError):
    status = 404
    error_type = "not_found_error"


class MemoryStoreNotFound(MemoryResourceNotFound):
    def __init__(self, memory_store_id: str) -> None:
        super().__init__(f"memory store {memory_store_id} not found")
        self.memory_store_id = memory_store_id


class MemoryNotFound(MemoryResourceNotFound):
    def __init__(self, memory_store_id: str, memory: str) -> None:
        super().__init__(f"memory {memory} not found in memory store {memory_store_id}")
        self.memory_store_id = memory_store_id
        self.memory = memory


class MemoryVersionNotFound(MemoryResourceNotFound):
    def __init__(self, memory_store_id: str, version_id: str) -> None:
        super().__init__(f"memory version {version_id} not found in memory store {memory_store_id}")
        self.memory_store_id = memory_store_id
        self.version_id = version_id


# --- 409 ------------------------------------------------------------------------------------------


class MemoryConflict(MemoryStoreError):
    status = 409
    error_type = "conflict_error"


class MemoryPreconditionFailed(MemoryConflict):
    """The memory's current ``content_sha256`` is not the expected one: nothing was written."""

    error_type = "memory_precondition_failed_error"

    def __init__(self, memory: str, expected: str, actual: str | None) -> None:
        now = "it does not exist" if actual is None else f"its content_sha256 is {actual}"
        super().__init__(
            f"precondition failed for memory {memory}: expected content_sha256 {expected} but {now}; "
            "re-read the memory and retry"
        )
        self.memory = memory
        self.expected = expected
        self.actual = actual


class MemoryPathConflict(MemoryConflict):
    """Another live memory of the store already has this path."""

    error_type = "memory_path_conflict_error"

    def __init__(self, path: str, existing_memory_id: str) -> None:
        super().__init__(f"path {path!r} is already used by memory {existing_memory_id} in this store")
        self.path = path
        self.existing_memory_id = existing_memory_id
