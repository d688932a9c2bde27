"""Job and per-memory event models: what ``GET /v1/event/{id}/`` reports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.graph import RelationEvents


class JobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class Stage(StrEnum):
    """Pipeline stages in order; a job's ``stage`` is the last one completed."""

    QUEUED = "queued"
    EXTRACTED = "extracted"
    EMBEDDED = "embedded"
    RECONCILED = "reconciled"
    NOTIFIED = "notified"

    @property
    def rank(self) -> int:
        return list(Stage).index(self)

    @property
    def previous(self) -> Stage:
        return list(Stage)[max(0, self.rank - 1)]


MemoryEventType = Literal["ADD", "UPDATE", "DELETE", "NONE"]
# The graph branch of a job (runs beside reconcile): no graph (None), PENDING, DONE, FAILED or SKIPPED.
GraphState = Literal["PENDING", "DONE", "FAILED", "SKIPPED"]


class MemoryEvent(BaseModel):
    """What happened to one memory in a job (Mem0's per-memory result)."""

    id: str
    memory: str
    event: MemoryEventType
    previous_memory: str | None = None


class AddAccepted(BaseModel):
    """Mem0's response to an asynchronous add."""

    message: str = "Memory processing has been queued for background execution"
    status: Literal["PENDING"] = "PENDING"
    event_id: str


class AddCompleted(BaseModel):
    """Response to ``async_mode=false``: the job ran to its end."""

    results: list[MemoryEvent]
    event_id: str
    status: str


class JobPublic(BaseModel):
    """The state of one ingest job."""

    id: str
    status: JobStatus
    stage: Stage
    attempts: int
    error: str | None = None
    results: list[MemoryEvent] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    request: dict[str, Any] | None = None
    graph_status: GraphState | None = Field(None, description="The job's graph branch; absent without graph memory")
    graph_error: str | None = Field(None, description="Why the graph branch failed (the memories are stored)")
    relations: RelationEvents | None = Field(None, description="Relations the job added to / deleted from the graph")
