"""``BranchStore``: a job's graph branch in SQL: its columns on ``jobs`` and ``relation_events`` (migration 0003).

The graph stage runs beside reconcile. ``graph_state`` is NULL for a job without graph memory,
else PENDING until the graph stage ends DONE, FAILED (the memories are stored anyway) or SKIPPED
(the job failed first). Notify waits for both branches; ``notify_claimed`` lets exactly one of
them send it. Kept apart from ``JobStore`` so the linear stages stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    Text,
    column,
    func,
    or_,
    select,
    table,
    update,
)

from engram.sql.engine import insert_ignore
from engram.sql.jobs import utcnow
from engram.sql.tables import metadata
from schemas.graph import RelationEvents, RelationPublic
from schemas.jobs import GraphState, JobStatus, Stage

relation_events = Table(
    "relation_events",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("event", String(8), nullable=False),  # "added" | "deleted"
    Column("source", Text, nullable=False),
    Column("relationship", String(100), nullable=False),
    Column("destination", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The branch columns of ``jobs``, as a lightweight table: ``tables.jobs`` is left as it is.
job_branches = table(
    "jobs",
    column("id", String),
    column("status", String),
    column("stage", String),
    column("graph_state", String),
    column("graph_attempts", Integer),
    column("graph_error", Text),
    column("notify_claimed", Boolean),
    column("updated_at", DateTime(timezone=True)),
)

BRANCH_DONE_STAGES = (Stage.RECONCILED.value, Stage.NOTIFIED.value)


@dataclass(frozen=True, slots=True)
class GraphBranch:
    status: JobStatus
    stage: Stage
    state: GraphState | None
    attempts: int
    error: str | None

    @property
    def open(self) -> bool:
        return self.state == "PENDING"

    @property
    def both_done(self) -> bool:
        """Reconcile is done and the graph branch (if the job has one) has ended."""
        return self.stage.value in BRANCH_DONE_STAGES and not self.open


class BranchStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def open_graph_branch(self, job_id: str) -> None:
        """Mark the job as having a graph branch, before either branch is sent (idempotent)."""
        j = job_branches
        with self.engine.begin() as conn:
            conn.execute(
                update(j)
                .where(j.c.id == job_id, j.c.graph_state.is_(None))
                .values(graph_state="PENDING", graph_attempts=0, updated_at=utcnow())
            )

    def get(self, job_id: str) -> GraphBranch | None:
        j = job_branches
        query = select(j.c.status, j.c.stage, j.c.graph_state, j.c.graph_attempts, j.c.graph_error)
        with self.engine.connect() as conn:
            row = conn.execute(query.where(j.c.id == job_id)).first()
        if row is None:
            return None
        return GraphBranch(
            JobStatus(row.status), Stage(row.stage), row.graph_state, row.graph_attempts or 0, row.graph_error
        )

    def start_attempt(self, job_id: str) -> int:
        """Count one more attempt of the graph stage (its own counter: reconcile runs meanwhile)."""
        j = job_branches
        with self.engine.begin() as conn:
            conn.execute(
                update(j).where(j.c.id == job_id).values(graph_attempts=func.coalesce(j.c.graph_attempts, 0) + 1)
            )
            return int(conn.execute(select(j.c.graph_attempts).where(j.c.id == job_id)).scalar_one())

    def finish(
        self,
        job_id: str,
        project_id: str,
        state: GraphState,
        *,
        error: str | None = None,
        events: dict[str, list[dict[str, str]]] | None = None,
    ) -> bool:
        """End the branch and record its relation events in one commit; False if it had already ended."""
        j = job_branches
        now = utcnow()
        rows: list[dict[str, Any]] = [
            {"job_id": job_id, "seq": seq, "project_id": project_id, "event": kind, "created_at": now, **triple}
            for seq, (kind, triple) in enumerate(
                (kind, t) for kind in ("added", "deleted") for t in (events or {}).get(kind, [])
            )
        ]
        with self.engine.begin() as conn:
            result = conn.execute(
                update(j)
                .where(j.c.id == job_id, j.c.graph_state == "PENDING")
                .values(graph_state=state, graph_error=error, updated_at=now)
            )
            if result.rowcount and rows:
                # Deterministic keys (job, seq): recording the same events again inserts nothing.
                conn.execute(insert_ignore(self.engine, relation_events), rows)
        return bool(result.rowcount)

    def claim_notify(self, job_id: str) -> bool:
        """True for exactly one caller, once reconcile is done and the graph branch (if any) has ended."""
        j = job_branches
        with self.engine.begin() as conn:
            result = conn.execute(
                update(j)
                .where(
                    j.c.id == job_id,
                    or_(j.c.notify_claimed.is_(None), j.c.notify_claimed.is_(False)),
                    j.c.stage == Stage.RECONCILED.value,
                    or_(j.c.graph_state.is_(None), j.c.graph_state != "PENDING"),
                )
                .values(notify_claimed=True)
            )
        return bool(result.rowcount)

    def relation_events(self, job_id: str) -> RelationEvents:
        r = relation_events
        with self.engine.connect() as conn:
            rows = conn.execute(select(r).where(r.c.job_id == job_id).order_by(r.c.seq)).mappings().all()
        events = RelationEvents()
        for row in rows:
            triple = RelationPublic(
                source=row["source"], relationship=row["relationship"], destination=row["destination"]
            )
            (events.added if row["event"] == "added" else events.deleted).append(triple)
        return events
