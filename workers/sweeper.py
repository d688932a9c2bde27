"""Task: one sweep (``engram.sweep``): re-send jobs whose queue message was lost.

Runs when a worker starts (``worker_ready``), every ``--every`` seconds in the ``engram sweep``
process (Procfile, docker-compose), and where ``celery beat`` runs. Any number of them may run.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from config.container import Container
from engram import sweeper
from engram.graph.routing import shard_for
from engram.graph.rpc import WRITE_PRIORITY
from engram.sql import tables
from engram.sql.branches import BranchStore
from engram.sql.jobs import _aware
from engram.sweeper import StuckJob, SweepReport
from workers import runtime
from workers.branches import GRAPH_INGEST_TASK, fork_branches, join_notify
from workers.celery_app import QUEUE_DEFAULT, QUEUE_LLM, app
from workers.stage import scope_of

log = logging.getLogger(__name__)
SWEEP_TASK = "engram.sweep"
PIPELINE_TASKS = frozenset({"engram.dispatch", "engram.extract", "engram.embed", "engram.reconcile", "engram.notify"})
# The queue of the task each step sends first (graph messages are not checked: a duplicate there is a no-op).
STEP_QUEUE = {"extract": QUEUE_LLM, "embed": QUEUE_DEFAULT, "branches": QUEUE_LLM, "join": QUEUE_DEFAULT}
# Unless pipeline.separate_stage_tasks, embed runs in the extract task and notify in reconcile's (mostly):
# a job waiting for either waits in the llm queue (a retry, or a redelivery of the task that died).
STEP_QUEUE_IN_PROCESS = {**STEP_QUEUE, "embed": QUEUE_LLM, "join": QUEUE_LLM}
QUEUE_PEEK_MESSAGES = 20
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UNKNOWN = datetime.min  # a sentinel: the queue holds something, but nothing that dates it


def resume(c: Container, stuck: StuckJob) -> str:
    """Send the task(s) of the job's next stage, the way the stage before would have handed it on."""
    step = stuck.step
    if step in ("extract", "embed"):
        app.send_task(f"engram.{step}", args=[stuck.id])
        return step
    job = c.jobs.get(stuck.id)
    if job is None:
        return "gone"
    if step == "branches":
        fork_branches(None, c, job, True)  # opens the graph branch if it never was; sends reconcile (+ graph)
        return "reconcile"
    branch = BranchStore(c.engine).get(job.id)
    # Reconcile is done; the graph stage's message was lost. Re-sent until the branch's deadline fails it.
    if branch is not None and branch.open:
        shard = shard_for(scope_of(job), c.settings.graph_store.shards)
        app.send_task(GRAPH_INGEST_TASK, kwargs={"job_id": job.id, "shard": shard}, priority=WRITE_PRIORITY)
        return "graph"
    join_notify(None, c, job, True)  # claims notify, or sends it again if the claimant died before sending
    return "notify"


class QueueHeads:
    """Tells a lost message from one still waiting behind a backlog (a bulk back-fill), for one sweep.

    A queue is FIFO and a job's ``updated_at`` is written just before its message is sent. So a job last
    touched before the oldest pipeline message still waiting in its queue would have been taken before
    that one: its message is gone. A job touched at or after it may be waiting its turn, and re-sending
    it would run its stage twice (two LLM calls). An empty queue holds nothing of anyone's.
    """

    def __init__(self, c: Container) -> None:
        self.c = c
        self.oldest: dict[str, datetime | None] = {}

    def waiting(self, stuck: StuckJob) -> bool:
        step_queue = STEP_QUEUE if self.c.settings.pipeline.separate_stage_tasks else STEP_QUEUE_IN_PROCESS
        queue = step_queue.get(stuck.step)
        if queue is None:
            return False
        if queue not in self.oldest:
            self.oldest[queue] = self._oldest_waiting(queue)
        oldest = self.oldest[queue]
        if oldest is None:
            return False
        return oldest is UNKNOWN or stuck.updated_at >= oldest

    def _oldest_waiting(self, queue: str) -> datetime | None:
        """``updated_at`` of the oldest jobs at the head of ``queue``; None if it is empty; UNKNOWN if the
        head holds no pipeline message (then assume everything may be waiting, until the next sweep)."""
        key = f"{self.c.settings.redis.key_prefix}celery:{queue}"
        raw = self.c.redis.lrange(key, -QUEUE_PEEK_MESSAGES, -1)  # consumers take from the right: the oldest
        if not raw:
            return None
        ids = [job_id for message in raw if (job_id := _job_of(message))]
        if not ids:
            return UNKNOWN
        with self.c.engine.connect() as conn:
            oldest = conn.execute(select(func.min(tables.jobs.c.updated_at)).where(tables.jobs.c.id.in_(ids))).scalar()
        if oldest is None:
            return UNKNOWN
        return _aware(oldest)


def _job_of(message: Any) -> str | None:
    try:
        headers = json.loads(message)["headers"]
    except (ValueError, KeyError, TypeError):
        return None
    if headers.get("task") not in PIPELINE_TASKS:
        return None
    match = JOB_ID.search(str(headers.get("argsrepr") or ""))
    return match.group(0) if match else None


def hand_on_expired(c: Container, job_id: str) -> None:
    """A graph branch ended by its deadline: notify, if reconcile is done (else reconcile's join sends it)."""
    job = c.jobs.get(job_id)
    if job is not None:
        join_notify(None, c, job, False)


def sweep_once(c: Container) -> SweepReport:
    # Deadlines first: a job whose graph branch expires here is handed on now, not re-sent below.
    expired = sweeper.expire_graph_branches(
        c.engine,
        c.settings.graph_store.branch_deadline_seconds,
        lambda job_id: hand_on_expired(c, job_id),
        limit=c.settings.pipeline.sweep_batch_size,
    )
    heads = QueueHeads(c)
    report = sweeper.sweep(c.engine, c.settings.pipeline, lambda stuck: resume(c, stuck), waiting=heads.waiting)
    report.graph_expired = expired
    return report


@app.task(name=SWEEP_TASK)
def sweep_task() -> int:
    """One sweep; returns how many jobs were sent on again (graph branches ended by their deadline too)."""
    report = sweep_once(runtime.container())
    return report.total + report.graph_expired
