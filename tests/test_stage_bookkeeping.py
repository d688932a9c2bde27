"""The SQL a job costs its workers: each task reads the job once, and the stages it runs in-task (embed after
extract, notify after reconcile) start from the job as the stage before left it.

The task bodies run here, in-process, on a real SQLite file, LanceDB directory and Redis; what they send to
the broker is captured instead. Every statement is counted per job on the pipeline's own engine.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from config.container import Container
from schemas.jobs import JobStatus, Stage
from workers import runtime
from workers.celery_app import app
from workers.extract import extract
from workers.reconcile import reconcile

PROJECT = "p-bookkeeping"


@pytest.fixture
def pipeline(container: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """The test's container as the worker's, and the messages the tasks send."""
    sent: list[tuple[str, Any]] = []
    monkeypatch.setattr(runtime, "_container", container)
    monkeypatch.setattr(app, "send_task", lambda name, args=None, kwargs=None, **_: sent.append((name, args)))
    container.upkeep_sender = None  # the store's upkeep runs after its own writes, here
    yield sent  # monkeypatch puts the worker's container back; the container fixture closes this one


def statements(engine: sa.Engine) -> Counter[str]:
    seen: Counter[str] = Counter()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen[" ".join(statement.split())] += 1

    return seen


def ingest(c: Container, sent: list[tuple[str, Any]], text: str) -> str:
    job_id = str(uuid.uuid4())
    request = {"messages": [{"role": "user", "content": text}], "user_id": "ana"}
    c.jobs.create(job_id, PROJECT, request, {"user_id": "ana"})
    extract(job_id)
    assert sent[-1] == ("engram.reconcile", [job_id])  # embed ran in the extract task
    reconcile(job_id)
    return job_id


def test_each_task_reads_its_job_once(container: Container, pipeline: list[tuple[str, Any]]) -> None:
    ingest(container, pipeline, "I live in Lisbon.")  # the scope holds a memory: the second job is decided on
    seen = statements(container.engine)
    job_id = ingest(container, pipeline, "I love hiking and I have a dog named Max.")
    seen = Counter(seen)  # the job's own statements, before the checks below add theirs
    job = container.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.stage is Stage.NOTIFIED
    assert len(container.jobs.events(job_id)) == 2
    job_reads = sum(n for s, n in seen.items() if s.startswith("SELECT jobs.id, jobs.project_id"))
    assert job_reads == 2  # one per task: extract (embed follows in it) and reconcile (notify follows in it)
    # A job without graph memory never reads a graph branch, and ends in one statement.
    assert not [s for s in seen if s.startswith("SELECT jobs.status, jobs.stage, jobs.graph_state")]
    assert sum(n for s, n in seen.items() if s.startswith("UPDATE jobs SET") and "finished_at" in s) == 1
    assert sum(n for s, n in seen.items() if s.startswith("UPDATE jobs SET status=?, attempts=")) == 4  # a stage each
    assert sum(seen.values()) <= 20  # the API's insert and the workers' 19 (26 before they carried the job)


def test_a_redelivered_task_reads_the_job_again(container: Container, pipeline: list[tuple[str, Any]]) -> None:
    # The in-task job is only ever the one this task just wrote; a redelivery starts from the row.
    job_id = ingest(container, pipeline, "I work as a nurse.")
    seen = statements(container.engine)
    extract(job_id)
    reconcile(job_id)
    seen = Counter(seen)
    assert sum(n for s, n in seen.items() if s.startswith("SELECT jobs.id, jobs.project_id")) == 2
    assert not [s for s in seen if s.startswith("UPDATE jobs SET status=?, attempts=")]  # nothing re-run
    job = container.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
