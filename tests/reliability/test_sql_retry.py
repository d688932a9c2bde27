"""Retries inside the SQL store layer: a locked SQLite and a lost PostgreSQL connection are retried, bounded;
other errors are not; a stage completion whose COMMIT landed but was reported lost still hands the job on."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from engram.sql import retry
from engram.sql.engine import make_engine
from engram.sql.jobs import JobStore
from engram.sql.migrate import upgrade
from schemas.jobs import JobStatus, Stage


def wrapped(orig: BaseException, cls: type[sa.exc.DBAPIError] = sa.exc.OperationalError) -> sa.exc.DBAPIError:
    return cls("SELECT 1", {}, orig)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (wrapped(sqlite3.OperationalError("database is locked")), True),
        (wrapped(sqlite3.OperationalError("database table is locked")), True),
        (wrapped(sqlite3.OperationalError("no such table: jobs")), False),
        (wrapped(sqlite3.OperationalError("unable to open database file")), False),
        (wrapped(psycopg.OperationalError("server closed the connection unexpectedly")), True),
        (wrapped(psycopg.InterfaceError("the connection is closed"), sa.exc.InterfaceError), True),
        (wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"), sa.exc.IntegrityError), False),
        (ValueError("not SQL"), False),
    ],
)
def test_what_counts_as_transient(error: BaseException, transient: bool) -> None:
    assert retry.is_transient(error) is transient


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[JobStore, Path]]:
    path = tmp_path / "busy.db"
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=50)
    upgrade(engine)
    yield JobStore(engine), path
    engine.dispose()


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another writer holds SQLite's write lock for ``seconds`` (what a burst of concurrent writers does)."""
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait(5)
    return thread


def test_a_locked_sqlite_is_retried_until_it_frees(sqlite_store: tuple[JobStore, Path]) -> None:
    store, path = sqlite_store
    job_id = str(uuid.uuid4())
    store.create(job_id, "p", {"messages": "x", "user_id": "u"}, {"user_id": "u"})
    holder = hold_write_lock(path, 0.3)  # longer than the 50 ms busy timeout, shorter than the retries
    store.finish(job_id, JobStatus.FAILED, "reason")
    holder.join()
    job = store.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED


def test_retries_are_bounded(sqlite_store: tuple[JobStore, Path]) -> None:
    store, path = sqlite_store
    job_id = str(uuid.uuid4())
    store.create(job_id, "p", {"messages": "x", "user_id": "u"}, {"user_id": "u"})
    holder = hold_write_lock(path, 4.0)  # outlasts every retry (~1 s in all)
    try:
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            store.finish(job_id, JobStatus.FAILED, "reason")
    finally:
        holder.join()


def test_a_completion_whose_commit_was_reported_lost_still_hands_on(sqlite_store: tuple[JobStore, Path]) -> None:
    store, _ = sqlite_store
    job_id = str(uuid.uuid4())
    store.create(job_id, "p", {"messages": "x", "user_id": "u"}, {"user_id": "u"})
    failed_once: list[bool] = []

    @event.listens_for(store.engine, "commit")
    def lose_the_answer(conn: sa.Connection) -> None:
        if not failed_once and conn.in_transaction():
            failed_once.append(True)
            conn.connection.dbapi_connection.commit()  # type: ignore[union-attr]  # it landed ...
            raise wrapped(ConnectionResetError("connection lost during COMMIT"))  # ... and we were not told

    assert store.complete_stage(job_id, Stage.EXTRACTED, facts=["Likes tea"])
    event.remove(store.engine, "commit", lose_the_answer)
    job = store.get(job_id)
    assert failed_once and job is not None and job.stage is Stage.EXTRACTED and job.facts == ["Likes tea"]
    assert not store.complete_stage(job_id, Stage.EXTRACTED, facts=["other"])  # a real duplicate is still refused


@pytest.mark.postgres
def test_a_lost_postgres_connection_is_retried(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = sa.create_engine(postgres_url, pool_size=1, pool_pre_ping=False)  # no ping: the query meets the loss
    upgrade(engine)
    store = JobStore(engine)
    job_id = str(uuid.uuid4())
    store.create(job_id, "p", {"messages": "x", "user_id": "u"}, {"user_id": "u"})
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    admin.dispose()
    with caplog.at_level("INFO", logger="engram.sql.retry"):
        job = store.get(job_id)  # the pooled connection is dead: the first try fails, the retry reconnects
    assert job is not None and job.id == job_id
    assert "transient SQL error" in caplog.text
    engine.dispose()
