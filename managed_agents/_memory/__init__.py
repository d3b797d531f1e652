"""Memory stores: Managed Agents' durable, versioned text documents that sessions mount under
``/mnt/memory/<slug>`` (see docs in /work/shared/spec: mechanics §1.5, API §7).

Use :class:`MemoryService` (synchronous; SQLite or PostgreSQL)::

    from managed_agents._memory import MemoryService, user_actor

    memory = MemoryService("sqlite:///.managed-agents/sessions.db")
    store = memory.create_store("User preferences", description="What the user likes")
    memory.write_memory(store.id, "/style.md", "Short answers.", user_actor("alice"))
"""

from managed_agents._database import create_store_engine
from managed_agents._memory.errors import (
    InvalidMemoryRequest,
    MemoryConflict,
    MemoryLimitExceeded,
    MemoryNotFound,
    MemoryPathConflict,
    MemoryPreconditionFailed,
    MemoryResourceNotFound,
    MemoryStoreArchived,
    MemoryStoreError,
    MemoryStoreNotFound,
    MemoryVersionNotFound,
    MemoryVersionNotRedactable,
)
from managed_agents._memory.models import (
    Actor,
    ApiActor,
    DeletedMemory,
    DeletedMemoryStore,
    Memory,
    MemoryPrefix,
    MemoryStore,
    MemoryStoreProposal,
    MemoryVersion,
    Page,
    Precondition,
    ServiceAccountActor,
    SessionActor,
    SnapshotEntry,
    UserActor,
    api_actor,
    session_actor,
    user_actor,
)
from managed_agents._memory.rules import (
    MAX_CONTENT_BYTES,
    MAX_INSTRUCTIONS_CHARS,
    MAX_MEMORIES_PER_STORE,
    MAX_PATH_BYTES,
    MAX_STORES_PER_SESSION,
    content_sha256,
    memory_store_slug,
    normalize_path,
    validate_path,
)
from managed_agents._memory.service import MemoryService

__all__ = [
    "MAX_CONTENT_BYTES",
    "MAX_INSTRUCTIONS_CHARS",
    "MAX_MEMORIES_PER_STORE",
    "MAX_PATH_BYTES",
    "MAX_STORES_PER_SESSION",
    "Actor",
    "ApiActor",
    "DeletedMemory",
    "DeletedMemoryStore",
    "InvalidMemoryRequest",
    "Memory",
    "MemoryConflict",
    "MemoryLimitExceeded",
    "MemoryNotFound",
    "MemoryPathConflict",
    "MemoryPreconditionFailed",
    "MemoryPrefix",
    "MemoryResourceNotFound",
    "MemoryService",
    "MemoryStore",
    "MemoryStoreArchived",
    "MemoryStoreError",
    "MemoryStoreNotFound",
    "MemoryStoreProposal",
    "MemoryVersion",
    "MemoryVersionNotFound",
    "MemoryVersionNotRedactable",
    "Page",
    "Precondition",
    "ServiceAccountActor",
    "SessionActor",
    "SnapshotEntry",
    "UserActor",
    "api_actor",
    "content_sha256",
    "create_store_engine",
    "memory_store_slug",
    "normalize_path",
    "session_actor",
    "user_actor",
    "validate_path",
]
