"""``JobStore``: the truth about every ingest job (Celery's result backend is not used for this)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, String, bindparam, column, func, select, update

from engram.sql import tables
from engram.sql.engine import insert_ignore
from engram.sql.retry import retrying
from schemas.jobs import JobStatus, MemoryEvent, Stage


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    request: dict[str, Any]
    scope: dict[str, str]
    idempotency_key: str | None = None
    batch_index: int | None = None


@dataclass(slots=True)
class Job:
    id: str
    project_id: str
    status: JobStatus
    stage: Stage
    attempts: int
    error: str | None
    request: dict[str, Any]
    facts: list[str] | None
    embeddings: list[list[float]] | None
    plan: list[dict[str, Any]] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # PENDING/DONE/FAILED/SKIPPED once the job has a graph branch (``BranchStore``); None: it has none yet.
    graph_state: str | None = None

    def done(self, stage: Stage) -> bool:
        return self.stage.rank >= stage.rank


# The statements of the pipeline's per-stage bookkeeping, built once: building a Core statement costs more
# than SQLite running it (bench/: a job read 0.14 against 0.05 ms of CPU, an attempt 0.42 against 0.19).
_J = tables.jobs
_OPEN_STATUSES = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
_GET = select(_J, column("graph_state", String)).where(_J.c.id == bindparam("job_id"))
_GET_IN_PROJECT = _GET.where(_J.c.project_id == bindparam("project_id"))
_START_ATTEMPT = (
    update(_J)
    .where(_J.c.id == bindparam("job_id"))
    .values(
        status=JobStatus.RUNNING.value,
        attempts=_J.c.attempts + 1,
        updated_at=bindparam("now"),
        started_at=func.coalesce(_J.c.started_at, bindparam("now")),
    )
    .returning(_J.c.attempts, _J.c.plan)
)
# The same, only while the stage is still to do and the job open: a duplicate delivery that got there first
# leaves no row to update.
_START_STAGE_ATTEMPT = _START_ATTEMPT.where(_J.c.stage == bindparam("previous"), _J.c.status.in_(_OPEN_STATUSES))
_FINISH = (
    update(_J)
    .where(_J.c.id == bindparam("job_id"))
    .values(
        status=bindparam("v_status"),
        error=bindparam("v_error"),
        updated_at=bindparam("now"),
        finished_at=bindparam("now"),
    )
)
_FINISH_AT_STAGE = _FINISH.values(stage=bindparam("v_stage"))
_EVENTS = (
    select(tables.memory_events)
    .where(tables.memory_events.c.job_id == bindparam("job_id"))
    .order_by(tables.memory_events.c.seq)
)
_SAVE_PLAN = (
    update(_J)
    .where(_J.c.id == bindparam("job_id"), _J.c.plan.is_(None))
    .values(plan=bindparam("v_plan", type_=_J.c.plan.type), updated_at=bindparam("now"))
)
_complete_statements: dict[frozenset[str], Any] = {}


def _complete_statement(columns: frozenset[str]) -> Any:
    """The stage-completion UPDATE setting ``columns`` (one statement per set of stage outputs)."""
    statement = _complete_statements.get(columns)
    if statement is None:
        statement = (
            update(_J)
            .where(_J.c.id == bindparam("job_id"), _J.c.stage == bindparam("previous"))
            .values({name: bindparam(f"v_{name}", type_=_J.c[name].type) for name in sorted(columns)})
        )
        _complete_statements[columns] = statement
    return statement


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt of a stage, counted: its number, and the reconcile plan an earlier attempt saved."""

    number: int
    plan: list[dict[str, Any]] | None


def pack_vectors(vectors: Sequence[Sequence[float]]) -> bytes:
    return np.asarray(vectors, dtype="<f4").tobytes() if vectors else b""


def unpack_vectors(blob: bytes | None, count: int) -> list[list[float]] | None:
    if blob is None:
        return None
    if count == 0:
        return []
    return np.frombuffer(blob, dtype="<f4").reshape(count, -1).tolist()


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything engram stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def create(self, job_id: str, project_id: str, request: dict[str, Any], scope: dict[str, str]) -> None:
        self.create_many(project_id, [NewJob(job_id, request, scope)])

    @retrying
    def create_many(self, project_id: str, new_jobs: Sequence[NewJob], batch_id: str | None = None) -> dict[str, str]:
        """Record PENDING jobs in one transaction. A job whose idempotency key the project has used
        before is not created again: the answer maps each new job's id to the id that holds its key
        (itself, or the earlier job)."""
        if not new_jobs:
            return {}
        now = utcnow()
        rows = [
            {
                "id": j.id, "project_id": project_id, "kind": "add", "status": JobStatus.PENDING.value,
                "stage": Stage.QUEUED.value, "attempts": 0, "request": j.request,
                "user_id": j.scope.get("user_id", ""), "agent_id": j.scope.get("agent_id", ""),
                "run_id": j.scope.get("run_id", ""), "created_at": now, "updated_at": now,
                "batch_id": batch_id, "batch_index": j.batch_index, "idempotency_key": j.idempotency_key,
            }
            for j in new_jobs
        ]
        keys = [j.idempotency_key for j in new_jobs if j.idempotency_key]
        with self.engine.begin() as conn:
            conn.execute(insert_ignore(self.engine, tables.jobs), rows)
            holders: dict[str, str] = {}
            if keys:
                query = select(tables.jobs.c.idempotency_key, tables.jobs.c.id).where(
                    tables.jobs.c.project_id == project_id, tables.jobs.c.idempotency_key.in_(keys)
                )
                holders = {key: job_id for key, job_id in conn.execute(query)}
        return {j.id: holders.get(j.idempotency_key, j.id) if j.idempotency_key else j.id for j in new_jobs}

    @retrying
    def abandon(self, job_ids: Sequence[str], reason: str) -> None:
        """Jobs the client was told were refused: FAILED, never run later, and their idempotency keys given
        back so the client's retry can run."""
        if not job_ids:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(tables.jobs)
                .where(tables.jobs.c.id.in_(list(job_ids)))
                .values(status=JobStatus.FAILED.value, error=reason[:2000], idempotency_key=None,
                        updated_at=now, finished_at=now)
            )

    @retrying
    def count_waiting(self) -> int:
        """Jobs accepted and not started yet, in every project (what backpressure limits)."""
        query = select(func.count()).select_from(tables.jobs).where(tables.jobs.c.status == JobStatus.PENDING.value)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    @retrying
    def still_waiting(self, job_ids: Sequence[str]) -> list[str]:
        """Those of ``job_ids`` that are still PENDING (not started, not ended), in the given order."""
        query = select(tables.jobs.c.id).where(
            tables.jobs.c.id.in_(list(job_ids)), tables.jobs.c.status == JobStatus.PENDING.value
        )
        with self.engine.connect() as conn:
            waiting = {row[0] for row in conn.execute(query)}
        return [job_id for job_id in job_ids if job_id in waiting]

    @retrying
    def batch_counts(self, batch_id: str) -> dict[str, int]:
        query = (
            select(tables.jobs.c.status, func.count())
            .where(tables.jobs.c.batch_id == batch_id)
            .group_by(tables.jobs.c.status)
        )
        with self.engine.connect() as conn:
            return {status: int(count) for status, count in conn.execute(query)}

    @retrying
    def batch_events(self, batch_id: str) -> dict[str, int]:
        """How many memories the batch's jobs added, updated, deleted (and left alone), by event."""
        e, j = tables.memory_events, tables.jobs
        query = (
            select(e.c.event, func.count())
            .select_from(e.join(j, e.c.job_id == j.c.id))
            .where(j.c.batch_id == batch_id)
            .group_by(e.c.event)
        )
        with self.engine.connect() as conn:
            return {event: int(count) for event, count in conn.execute(query)}

    @retrying
    def batch_failures(self, batch_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        j = tables.jobs
        query = (
            select(j.c.id, j.c.batch_index, j.c.idempotency_key, j.c.error)
            .where(j.c.batch_id == batch_id, j.c.status == JobStatus.FAILED.value)
            .order_by(j.c.batch_index)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {"index": r.batch_index, "event_id": r.id, "idempotency_key": r.idempotency_key, "error": r.error}
                for r in conn.execute(query)
            ]

    @retrying
    def get(self, job_id: str, project_id: str | None = None) -> Job | None:
        query, params = (_GET, {"job_id": job_id}) if project_id is None else (
            _GET_IN_PROJECT, {"job_id": job_id, "project_id": project_id}
        )
        with self.engine.connect() as conn:
            row = conn.execute(query, params).mappings().first()
        if row is None:
            return None
        facts = row["facts"]
        return Job(
            id=row["id"],
            project_id=row["project_id"],
            status=JobStatus(row["status"]),
            stage=Stage(row["stage"]),
            attempts=row["attempts"],
            error=row["error"],
            request=row["request"],
            facts=facts,
            embeddings=unpack_vectors(row["embeddings"], len(facts or [])),
            plan=row["plan"],
            created_at=_aware(row["created_at"]),  # type: ignore[arg-type]
            updated_at=_aware(row["updated_at"]),  # type: ignore[arg-type]
            started_at=_aware(row["started_at"]),
            finished_at=_aware(row["finished_at"]),
            graph_state=row["graph_state"],
        )

    @retrying
    def start_attempt(self, job_id: str) -> int:
        """Mark the job RUNNING and count one more attempt of its current stage; return the count.

        Retried on transient SQL errors: if a connection dies during COMMIT after the increment landed,
        the attempt is counted twice, which spends the budget early and never exceeds it.
        """
        with self.engine.begin() as conn:
            row = conn.execute(_START_ATTEMPT, {"job_id": job_id, "now": utcnow()}).first()
        if row is None:
            raise LookupError(f"job {job_id} not found")
        return int(row.attempts)

    @retrying
    def start_stage_attempt(self, job_id: str, stage: Stage) -> Attempt | None:
        """``start_attempt`` while ``stage`` is still to do and the job open, else None (nothing counted).

        One statement for what a stage checks and counts before its work (a duplicate delivery may have
        done the stage meanwhile), returning the plan an earlier attempt of reconcile saved.
        """
        params = {"job_id": job_id, "now": utcnow(), "previous": stage.previous.value}
        with self.engine.begin() as conn:
            row = conn.execute(_START_STAGE_ATTEMPT, params).first()
        return None if row is None else Attempt(int(row.attempts), row.plan)

    def complete_stage(self, job_id: str, stage: Stage, **outputs: Any) -> bool:
        """Record a stage's output and advance the done marker; attempts restart for the next stage.

        Only the first completion counts: if a duplicate delivery of the stage finished first, this
        one's outputs are dropped (False), so later stages never see outputs change under them.
        """
        values: dict[str, Any] = {"stage": stage.value, "attempts": 0, "updated_at": utcnow()}
        if "embeddings" in outputs:
            values["embeddings"] = pack_vectors(outputs.pop("embeddings"))
        values.update(outputs)
        statement = _complete_statement(frozenset(values))
        params = {f"v_{name}": value for name, value in values.items()}
        params.update(job_id=job_id, previous=stage.previous.value)
        tries = 0

        @retrying
        def once() -> bool:
            nonlocal tries
            tries += 1
            with self.engine.begin() as conn:
                result = conn.execute(statement, params)
                if result.rowcount or tries == 1:
                    return bool(result.rowcount)
                # A retry after a COMMIT that may have landed: if the stage is done now, this call (or a
                # duplicate) did it; either way handing on is safe (the next stage drops duplicates).
                done = conn.execute(select(_J.c.stage).where(_J.c.id == job_id)).scalar()
                return done is not None and Stage(done).rank >= stage.rank

        return once()

    @retrying
    def refund_attempt(self, job_id: str) -> None:
        """Take back an attempt that was not the stage's fault (it waited for the shared LLM rate limit)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(tables.jobs)
                .where(tables.jobs.c.id == job_id, tables.jobs.c.attempts > 0)
                .values(attempts=tables.jobs.c.attempts - 1)
            )

    @retrying
    def finish(self, job_id: str, status: JobStatus, error: str | None = None, *, stage: Stage | None = None) -> None:
        """End the job; ``stage``: mark that stage done in the same statement (the last one, notify)."""
        params = {"job_id": job_id, "v_status": status.value, "v_error": error, "now": utcnow()}
        with self.engine.begin() as conn:
            if stage is None:
                conn.execute(_FINISH, params)
            else:
                conn.execute(_FINISH_AT_STAGE, {**params, "v_stage": stage.value})

    def record_events(self, job_id: str, project_id: str, events: Sequence[MemoryEvent], conn: Any) -> None:
        """Per-memory events of a job, inside the caller's transaction; re-recording is a no-op."""
        if not events:
            return
        now = utcnow()
        conn.execute(
            insert_ignore(self.engine, tables.memory_events),
            [
                {
                    "job_id": job_id,
                    "seq": seq,
                    "project_id": project_id,
                    "memory_id": e.id,
                    "event": e.event,
                    "memory": e.memory,
                    "previous_memory": e.previous_memory,
                    "created_at": now,
                }
                for seq, e in enumerate(events)
            ],
        )

    @retrying
    def events(self, job_id: str) -> list[MemoryEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(_EVENTS, {"job_id": job_id}).mappings().all()
        return [
            MemoryEvent(id=r["memory_id"], memory=r["memory"], event=r["event"], previous_memory=r["previous_memory"])
            for r in rows
        ]

    @retrying
    def save_plan(self, job_id: str, plan: list[dict[str, Any]]) -> bool:
        """Save the job's reconcile plan unless one is saved already; True when this one was saved."""
        with self.engine.begin() as conn:
            saved = conn.execute(_SAVE_PLAN, {"job_id": job_id, "v_plan": plan, "now": utcnow()})
        return bool(saved.rowcount)
