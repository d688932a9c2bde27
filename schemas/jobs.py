"""Job and per-memory event models: what ``GET /v1/event/{id}/`` reports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.graph import AddRelations, RelationEvents


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
    """Response to ``async_mode=false``: the job ran to its end.

    With graph memory on for the job, Mem0's ``relations`` too, and how the graph branch ended (the
    three are left out of the response for a job without graph memory).
    """

    results: list[MemoryEvent]
    event_id: str
    status: str
    relations: AddRelations | None = Field(None, description="What the job changed in the graph (Mem0's shape)")
    graph_status: GraphState | None = Field(None, description="How the job's graph branch ended")
    graph_error: str | None = Field(None, description="Why the graph branch failed (the memories are stored)")


# AddCompleted's fields that only a job with graph memory has.
GRAPH_FIELDS = frozenset({"relations", "graph_status", "graph_error"})


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
    graph_error: str | None = Field(
        None, description="Why the graph branch failed (the memories are stored); kept, with a note, when a graph "
        "write that missed the deadline was applied later"
    )
    relations: RelationEvents | None = Field(None, description="Relations the job added to / deleted from the graph")
