"""``BranchStore``: a job's graph branch in SQL: its columns on ``jobs`` and ``relation_events`` (migration 0003).

The graph stage runs beside reconcile. ``graph_state`` is NULL for a job without graph memory,
else PENDING until the graph stage ends DONE, FAILED (the memories are stored anyway) or SKIPPED
(the job failed first). Notify waits for both branches; ``notify_claimed`` lets exactly one of
them send it. Kept apart from ``JobStore`` so the linear stages stay as they are.

A branch still PENDING ``graph_store.branch_deadline_seconds`` after it opened (``graph_opened_at``,
migration 0007) is failed by the sweeper (``expire``), so a graph-worker outage cannot hold jobs
open. Such a branch may still end DONE later (``finish``), see ``GraphBranch.expired``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
    bindparam,
    column,
    func,
    or_,
    select,
    table,
    update,
)

from engram.sql.engine import insert_ignore
from engram.sql.jobs import utcnow
from engram.sql.retry import retrying
from engram.sql.tables import metadata
from schemas.graph import AddRelations, RelationEvents, RelationPublic
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
    column("graph_opened_at", DateTime(timezone=True)),
    column("updated_at", DateTime(timezone=True)),
)

BRANCH_DONE_STAGES = (Stage.RECONCILED.value, Stage.NOTIFIED.value)
OPEN_JOB_STATUSES = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
# The reason a branch failed by its deadline starts with this: it tells such a branch (whose graph write
# may still come) from one the graph stage itself gave up on (which must not run again).
DEADLINE_REASON_PREFIX = "graph worker did not finish within "
LATE_NOTE = "; its graph write was applied later"


# Built once: run by every job (engram/sql/jobs.py says why).
_CLAIM_NOTIFY = (
    update(job_branches)
    .where(
        job_branches.c.id == bindparam("job_id"),
        or_(job_branches.c.notify_claimed.is_(None), job_branches.c.notify_claimed.is_(False)),
        job_branches.c.stage == Stage.RECONCILED.value,
        or_(job_branches.c.graph_state.is_(None), job_branches.c.graph_state != "PENDING"),
    )
    .values(notify_claimed=True)
)


def deadline_reason(deadline_seconds: float) -> str:
    return f"{DEADLINE_REASON_PREFIX}{deadline_seconds:g} s"


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
    def expired(self) -> bool:
        """Failed by the deadline, not by the graph stage: a late graph task still applies its write."""
        return self.state == "FAILED" and (self.error or "").startswith(DEADLINE_REASON_PREFIX)

    @property
    def both_done(self) -> bool:
        """Reconcile is done and the graph branch (if the job has one) has ended."""
        return self.stage.value in BRANCH_DONE_STAGES and not self.open


@dataclass(frozen=True, slots=True)
class GraphOutcome:
    """A job's graph branch as its outputs (add response, stream, webhook) report it."""

    state: GraphState
    error: str | None
    relations: RelationEvents  # empty unless DONE

    def add_fields(self) -> dict[str, Any]:
        """JSON-ready ``relations`` (Mem0's add shape), ``graph_status`` and ``graph_error``: what the add
        response and the job_succeeded webhook carry beside ``results``."""
        return {
            "relations": AddRelations.of(self.relations).model_dump(mode="json"),
            "graph_status": self.state,
            "graph_error": self.error,
        }


class BranchStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @retrying
    def open_graph_branch(self, job_id: str) -> None:
        """Mark the job as having a graph branch, before either branch is sent (idempotent)."""
        j = job_branches
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(j)
                .where(j.c.id == job_id, j.c.graph_state.is_(None))
                .values(graph_state="PENDING", graph_attempts=0, graph_opened_at=now, updated_at=now)
            )

    @retrying
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

    @retrying
    def start_attempt(self, job_id: str) -> int:
        """Count one more attempt of the graph stage (its own counter: reconcile runs meanwhile)."""
        j = job_branches
        with self.engine.begin() as conn:
            conn.execute(
                update(j).where(j.c.id == job_id).values(graph_attempts=func.coalesce(j.c.graph_attempts, 0) + 1)
            )
            return int(conn.execute(select(j.c.graph_attempts).where(j.c.id == job_id)).scalar_one())

    @retrying
    def refund_attempt(self, job_id: str) -> None:
        """Take back an attempt that only waited for the shared LLM rate limit."""
        j = job_branches
        with self.engine.begin() as conn:
            conn.execute(update(j).where(j.c.id == job_id, j.c.graph_attempts > 0)
                         .values(graph_attempts=j.c.graph_attempts - 1))

    @retrying
    def finish(
        self,
        job_id: str,
        project_id: str,
        state: GraphState,
        *,
        error: str | None = None,
        events: dict[str, list[dict[str, str]]] | None = None,
    ) -> bool:
        """End the branch and record its relation events in one commit; False if it had already ended.

        A branch the deadline failed may still end DONE: its graph write was applied after all, so its
        relations are recorded and ``graph_status`` tells the truth. The job is not touched: its status,
        results and the notifications already sent stay as they were. Any other late outcome is dropped.
        """
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
            if not result.rowcount and state == "DONE":
                result = conn.execute(
                    update(j)
                    .where(j.c.id == job_id, j.c.graph_state == "FAILED",
                           j.c.graph_error.startswith(DEADLINE_REASON_PREFIX, autoescape=True))
                    .values(graph_state=state, graph_error=j.c.graph_error + LATE_NOTE, updated_at=now)
                )
            if result.rowcount and rows:
                # Deterministic keys (job, seq): recording the same events again inserts nothing.
                conn.execute(insert_ignore(self.engine, relation_events), rows)
        return bool(result.rowcount)

    @retrying
    def claim_notify(self, job_id: str) -> bool:
        """True for exactly one caller, once reconcile is done and the graph branch (if any) has ended.

        Retried on transient SQL errors (issue #8: a locked SQLite here used to leave the job to the sweeper).
        A retry after a COMMIT that landed but was reported lost answers False: the job then waits for the
        sweeper's join, which sends notify for a job whose branches both ended."""
        with self.engine.begin() as conn:
            result = conn.execute(_CLAIM_NOTIFY, {"job_id": job_id})
        return bool(result.rowcount)

    @retrying
    def overdue(self, opened_before: datetime, limit: int) -> list[str]:
        """Open jobs whose graph branch opened before ``opened_before`` and is still PENDING, oldest first."""
        j = job_branches
        query = (
            select(j.c.id)
            .where(j.c.graph_state == "PENDING", j.c.graph_opened_at < opened_before,
                   j.c.status.in_(OPEN_JOB_STATUSES))
            .order_by(j.c.graph_opened_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [row.id for row in conn.execute(query)]

    @retrying
    def expire(self, job_id: str, opened_before: datetime, reason: str) -> bool:
        """Fail a branch still PENDING since before ``opened_before``; True for exactly one caller.

        (A COMMIT lost with its connection answers False on the retry: then the job's notify is sent by
        the stuck-job sweep, which finds the branch ended.)
        """
        j = job_branches
        with self.engine.begin() as conn:
            result = conn.execute(
                update(j)
                .where(j.c.id == job_id, j.c.graph_state == "PENDING", j.c.graph_opened_at < opened_before)
                .values(graph_state="FAILED", graph_error=reason, updated_at=utcnow())
            )
        return bool(result.rowcount)

    def outcome(self, job_id: str) -> GraphOutcome | None:
        """What the job's graph branch did, for the job's outputs; None when the job has no graph branch."""
        branch = self.get(job_id)
        if branch is None or branch.state is None:
            return None
        relations = self.relation_events(job_id) if branch.state == "DONE" else RelationEvents()
        return GraphOutcome(branch.state, branch.error, relations)

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
