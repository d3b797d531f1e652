"""Memory stores, memories and memory versions, with Managed Agents' names and shapes.

Objects the service returns (``BetaManagedAgentsMemoryStore``, ``BetaManagedAgentsMemory``,
``BetaManagedAgentsMemoryVersion``, ...) and the parameter shapes it takes (actors, preconditions).
``MemoryStore.proposal`` is this engine's own extension (for Dreaming); everything else is the API's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, NamedTuple, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MemoryView = Literal["basic", "full"]
MemoryVersionOperation = Literal["created", "modified", "deleted"]
ProposalStatus = Literal["proposed", "promoted", "discarded"]

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- actors (``BetaManagedAgentsActor``) ------------------------------------------------------------


class SessionActor(_Model):
    """An agent that wrote through the store's mount in a session."""

    type: Literal["session_actor"] = "session_actor"
    session_id: str = Field(min_length=1)


class ApiActor(_Model):
    type: Literal["api_actor"] = "api_actor"
    api_key_id: str = Field(min_length=1)


class UserActor(_Model):
    type: Literal["user_actor"] = "user_actor"
    user_id: str = Field(min_length=1)


class ServiceAccountActor(_Model):
    type: Literal["service_account_actor"] = "service_account_actor"
    service_account_id: str = Field(min_length=1)


Actor: TypeAlias = Annotated[SessionActor | ApiActor | UserActor | ServiceAccountActor, Field(discriminator="type")]
ActorAdapter: TypeAdapter[SessionActor | ApiActor | UserActor | ServiceAccountActor] = TypeAdapter(Actor)


def session_actor(session_id: str) -> SessionActor:
    return SessionActor(session_id=session_id)


def user_actor(user_id: str) -> UserActor:
    return UserActor(user_id=user_id)


def api_actor(api_key_id: str) -> ApiActor:
    return ApiActor(api_key_id=api_key_id)


# --- parameters ------------------------------------------------------------------------------------


class Precondition(_Model):
    """``BetaManagedAgentsPreconditionParam``: the memory's current content must have this hash."""

    type: Literal["content_sha256"] = "content_sha256"
    content_sha256: str = Field(pattern=SHA256_PATTERN)


class MemoryStoreProposal(_Model):
    """Extension: a store produced by Dreaming, awaiting review (``proposed``) or reviewed."""

    status: ProposalStatus
    source_memory_store_id: str | None = None
    dream_id: str | None = None


# --- objects ---------------------------------------------------------------------------------------


class MemoryStore(_Model):
    type: Literal["memory_store"] = "memory_store"
    id: str
    name: str
    description: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    proposal: MemoryStoreProposal | None = None


class DeletedMemoryStore(_Model):
    type: Literal["memory_store_deleted"] = "memory_store_deleted"
    id: str


class Memory(_Model):
    type: Literal["memory"] = "memory"
    id: str
    memory_store_id: str
    memory_version_id: str
    path: str
    content: str | None = None
    content_sha256: str
    content_size_bytes: int
    created_at: datetime
    updated_at: datetime


class MemoryPrefix(_Model):
    """A directory marker in a ``depth``-limited listing; not a stored object."""

    type: Literal["memory_prefix"] = "memory_prefix"
    path: str


MemoryListItem: TypeAlias = Annotated[Memory | MemoryPrefix, Field(discriminator="type")]


class DeletedMemory(_Model):
    type: Literal["memory_deleted"] = "memory_deleted"
    id: str


class MemoryVersion(_Model):
    type: Literal["memory_version"] = "memory_version"
    id: str
    memory_id: str
    memory_store_id: str
    operation: MemoryVersionOperation
    path: str | None = None
    content: str | None = None
    content_sha256: str | None = None
    content_size_bytes: int | None = None
    created_by: Actor | None = None
    created_at: datetime
    redacted_at: datetime | None = None
    redacted_by: Actor | None = None


T = TypeVar("T")


class Page(_Model, Generic[T]):
    """A ``SyncPageCursor`` page: pass ``next_page`` back as ``page`` for the next one."""

    data: list[T]
    next_page: str | None = None


class SnapshotEntry(NamedTuple):
    """One live memory of a store at a point in time (for Dreaming and mount sync)."""

    path: str
    content: str
    content_sha256: str
