"""SQL under stress: SQLite with a competing writer holding its write lock again and again (with a short busy
timeout, so "database is locked" really happens), and PostgreSQL with every connection of the database killed
again and again. Ingest and reads go on meanwhile: the API never answers 500 (at worst 503 with Retry-After),
the store layer retries, and every accepted job ends, with nothing duplicated.
CI: 40 jobs each; ``--soak``: 200.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PG_ADMIN_URL, missing
from tests.reliability.helpers import Sweeper, add_body, all_terminal, check_invariants, sql_engine, wait_until
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.fault]
FACTS = ["I like tea.", "I play chess.", "I live in Oslo.", "I own a kayak.", "I speak Finnish."]


def drive(stack: Stack, jobs: int) -> tuple[list[str], Counter[str]]:
    """Submit ``jobs`` adds from 8 threads and read each job back, like a busy client; the statuses seen."""
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    client = httpx.Client(base_url=stack.base_url, headers=dict(stack.client.headers), timeout=120)

    def one(i: int) -> str | None:
        response = client.post("/v1/memories/", json=add_body(f"sql-u{i % 8}", FACTS[i % len(FACTS)]))
        seen = [response]
        event_id = response.json().get("event_id") if response.status_code == 202 else None
        if event_id:
            seen.append(client.get(f"/v1/event/{event_id}/"))
        seen.append(client.get("/v1/memories/", params={"user_id": f"sql-u{i % 8}"}))
        with lock:
            for r in seen:
                statuses[str(r.status_code)] += 1
                assert r.status_code < 500 or (r.status_code == 503 and r.headers.get("retry-after")), r.text
        return event_id  # type: ignore[no-any-return]

    with ThreadPoolExecutor(8) as pool:
        event_ids = [e for e in pool.map(one, range(jobs)) if e]
    client.close()
    return event_ids, statuses


def keep_doing(action: Callable[[], None], stop: threading.Event, pause_seconds: float) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            action()
            stop.wait(pause_seconds)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def finish(stack: Stack, event_ids: list[str], statuses: Counter[str], name: str, faults: int, soak: bool) -> int:
    """Check the outcome; returns how many transient SQL errors the workers' store layer retried."""
    engine = sql_engine(stack)
    wait_until(all_terminal(engine, event_ids), "every accepted job ended", 600 if soak else 240, 0.5)
    out = check_invariants(stack, engine, event_ids)
    resent = (stack.workdir / "sweeper.log").read_text(errors="replace").count("; re-sent ")
    retried = (stack.workdir / "worker.log").read_text(errors="replace").count("transient SQL error")
    print(f"\nRELIABILITY {name}: {faults} faults injected; API statuses {dict(statuses)}; store-layer retries in the "
          f"worker {retried}; sweeper re-sent {resent}; {out.summary()}")
    assert faults > 0, "the fault never happened: this run proves nothing"
    assert event_ids, "no add was accepted at all"
    assert "500" not in statuses
    assert not out.lost_jobs and out.duplicate_memories == 0 and not out.history_mismatches, out.summary()
    assert out.statuses["SUCCEEDED"] == len(event_ids), out.summary()
    engine.dispose()
    return retried


@pytest.fixture
def sqlite_stack(tmp_path: Path, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path, redis_url, ENGRAM_SQL__BUSY_TIMEOUT_MS="100", ENGRAM_PIPELINE__STUCK_AFTER_SECONDS="10")
    try:
        s.start()
        Sweeper(s, every_seconds=2)
        yield s
    finally:
        s.stop()


def test_sqlite_with_a_competing_writer(sqlite_stack: Stack, soak: bool) -> None:
    path = sqlite_stack.env["ENGRAM_SQL__URL"].removeprefix("sqlite:///")
    held = [0]

    def hold_the_write_lock() -> None:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(0.25)  # 2.5x the busy timeout the API and workers were given
        conn.execute("COMMIT")
        conn.close()
        held[0] += 1

    stop = threading.Event()
    writer = keep_doing(hold_the_write_lock, stop, 0.25)
    try:
        event_ids, statuses = drive(sqlite_stack, 200 if soak else 40)
        wait_until(all_terminal(sql_engine(sqlite_stack), event_ids), "jobs ended under the competing writer",
                   600 if soak else 240, 0.5)
    finally:
        stop.set()
        writer.join(10)
    retried = finish(sqlite_stack, event_ids, statuses, "sqlite-locked", held[0], soak)
    assert retried > 0, "the workers never met a locked database: the busy timeout did not bite"


@pytest.fixture
def pg_stack(tmp_path: Path, redis_url: str) -> Iterator[tuple[Stack, str]]:
    name = f"engram_fault_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        missing(f"PostgreSQL at {PG_ADMIN_URL}: {exc}")
    s = Stack(tmp_path, redis_url, sql_url=PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name,
              ENGRAM_PIPELINE__STUCK_AFTER_SECONDS="10")
    try:
        s.start()
        Sweeper(s, every_seconds=2)
        yield s, name
    finally:
        s.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_connections_killed_again_and_again(pg_stack: tuple[Stack, str], soak: bool) -> None:
    stack, database = pg_stack
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    killed = [0]

    def kill_every_connection() -> None:
        with admin.connect() as conn:
            killed[0] += int(conn.execute(
                sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalar_one())

    stop = threading.Event()
    killer = keep_doing(kill_every_connection, stop, 0.5)
    try:
        event_ids, statuses = drive(stack, 200 if soak else 40)
        wait_until(all_terminal(sql_engine(stack), event_ids), "jobs ended while connections were killed",
                   600 if soak else 240, 0.5)
    finally:
        stop.set()
        killer.join(10)
        admin.dispose()
    finish(stack, event_ids, statuses, "postgres-connection-loss", killed[0], soak)
