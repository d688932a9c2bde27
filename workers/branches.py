"""After embed the job forks: reconcile and (with graph memory) the graph stage run side by side.

No chords (DESIGN.md #8): each branch records its end in SQL, and whichever ends second sends
notify, decided by one conditional UPDATE (``BranchStore.claim_notify``). A redelivered branch
whose work was already done sends notify again if the job is still open: the claimant may have
died between claiming and sending, and a duplicate notify is a no-op. A graph branch that no graph
worker ends in time is ended by the sweeper at its deadline, which then joins in the same way.
"""

from __future__ import annotations

from celery import Task

from config.container import Container
from engram.graph.routing import TASK_PREFIX, shard_for
from engram.graph.rpc import WRITE_PRIORITY
from engram.sql.branches import BranchStore
from engram.sql.jobs import Job
from workers.celery_app import app
from workers.notify import NOTIFY_TASK, notify_body
from workers.stage import scope_of, send_or_run

GRAPH_INGEST_TASK = TASK_PREFIX + "ingest"


def fork_branches(task: Task | None, c: Container, job: Job, redelivered: bool) -> None:
    """Embed's hand-on: the graph stage (to the scope's shard) and reconcile."""
    graph = c.settings.graph_store
    if graph.enabled:
        # Recorded before either branch is sent, so notify can never run without waiting for it.
        BranchStore(c.engine).open_graph_branch(job.id)
        shard = shard_for(scope_of(job), graph.shards)
        app.send_task(GRAPH_INGEST_TASK, kwargs={"job_id": job.id, "shard": shard}, priority=WRITE_PRIORITY)
    app.send_task("engram.reconcile", args=[job.id])


def join_notify(task: Task | None, c: Container, job: Job, redelivered: bool) -> None:
    """The hand-on of both branches: notify once reconcile is done and the graph branch has ended.

    Notify runs in ``task`` (reconcile's, by default) or, with ``task`` None, as a task of its own."""
    branches = BranchStore(c.engine)
    if branches.claim_notify(job.id):
        send_or_run(task, c, NOTIFY_TASK, notify_body, job)
        return
    if redelivered:
        branch = branches.get(job.id)
        if branch is not None and branch.both_done and not branch.status.terminal:
            send_or_run(task, c, NOTIFY_TASK, notify_body, job)
