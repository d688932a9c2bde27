"""What the fault tests share: a private Redis server, a sweeper process, bounded waits, and the
invariants every fault must leave intact (checked through the API and straight in SQL)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa

from tests.stack import BIN, Stack, free_port

TERMINAL = ("SUCCEEDED", "FAILED")


def wait_until(condition: Callable[[], Any], what: str, timeout_seconds: float, poll_seconds: float = 0.25) -> Any:
    """Poll until ``condition()`` is truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_seconds)
    raise TimeoutError(f"{what}: not within {timeout_seconds:.0f}s")


class RedisServer:
    """A private redis-server on loopback (never the shared one on 6379): no persistence, so a kill
    loses every message and lock it held, like a crashed broker without AOF."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> RedisServer:
        log = open(self.workdir / f"redis-{self.starts}.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.starts += 1
        wait_until(self.alive, "private redis-server up", 20, 0.05)
        return self

    def alive(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.exceptions.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    stop = kill


class Sweeper:
    """``engram sweep --every N`` as its own process group, logging to ``sweeper.log`` in the stack's workdir."""

    def __init__(self, stack: Stack, every_seconds: float = 1.0, name: str = "sweeper") -> None:
        self.stack = stack
        self.name = name
        self.proc = stack._spawn(name, [str(BIN / "engram"), "sweep", "--every", str(every_seconds)])


class Supervisor:
    """Restarts the stack's pipeline worker when it has exited, as a process manager does in production
    (docker-compose ``restart: unless-stopped``); counts how often that was needed."""

    def __init__(self, stack: Stack, worker: subprocess.Popen[bytes]) -> None:
        self.stack = stack
        self.worker = worker
        self.restarts: list[str] = []

    def check(self) -> None:
        if self.worker.poll() is None:
            return
        name = f"worker-supervised-{len(self.restarts) + 1}"
        log = self.stack.workdir / ("worker.log" if not self.restarts else f"{self.restarts[-1]}.log")
        crash = re.findall(r"CRITICAL/MainProcess\] (Unrecoverable error: .*)", log.read_text(errors="replace"))
        self.restarts.append(name)
        print(f"\nworker exited ({crash[-1] if crash else f'exit code {self.worker.returncode}'}); restarted")
        self.worker = self.stack.start_worker(name=name)


def sql_engine(stack: Stack) -> sa.Engine:
    return sa.create_engine(stack.env["ENGRAM_SQL__URL"], poolclass=sa.pool.NullPool)


def job_rows(engine: sa.Engine, job_ids: Iterable[str]) -> dict[str, Any]:
    ids = list(job_ids)
    rows: dict[str, Any] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = sa.text("SELECT id, status, stage, attempts, error, user_id FROM jobs WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            )
            rows.update({r.id: r for r in conn.execute(query, {"ids": chunk})})
    return rows


def all_terminal(engine: sa.Engine, job_ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            rows = job_rows(engine, job_ids)
        except sa.exc.OperationalError:
            return False  # the test's own connection was killed too (the PostgreSQL fault): ask again
        return len(rows) == len(job_ids) and all(r.status in TERMINAL for r in rows.values())

    return check


@dataclass
class Outcome:
    """What the jobs of one fault test ended as, for the assertions and for RELIABILITY.md."""

    jobs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failure_reasons: Counter[str] = field(default_factory=Counter)
    memories: int = 0
    duplicate_memories: int = 0
    history_mismatches: list[str] = field(default_factory=list)
    orphan_histories: list[str] = field(default_factory=list)
    lost_jobs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.jobs} jobs: {dict(self.statuses)}; failures {dict(self.failure_reasons)}; "
                f"{self.memories} memories, {self.duplicate_memories} duplicates, "
                f"{len(self.history_mismatches)} history mismatches, {len(self.orphan_histories)} orphan histories, "
                f"{len(self.lost_jobs)} lost jobs")


def memories_of(client: httpx.Client, user_id: str) -> list[dict[str, Any]]:
    response = client.get("/v1/memories/", params={"user_id": user_id, "page_size": 1000})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def check_invariants(stack: Stack, engine: sa.Engine, job_ids: list[str]) -> Outcome:
    """Every job terminal (FAILED ones with a reason); per scope no two memories with the same content
    hash; each memory's history ends with its current text; history of a memory that is gone ends in DELETE.
    """
    out = Outcome(jobs=len(job_ids))
    rows = job_rows(engine, job_ids)
    out.lost_jobs = sorted(set(job_ids) - set(rows))
    for job_id, row in rows.items():
        out.statuses[row.status] += 1
        if row.status not in TERMINAL:
            out.lost_jobs.append(job_id)
        elif row.status == "FAILED":
            assert row.error, f"job {job_id} FAILED without a reason"
            out.failure_reasons[re.sub(r"[0-9a-f-]{36}|\d+", "#", row.error)[:80]] += 1
    users = sorted({r.user_id for r in rows.values()})
    project_id = stack.client.get("/v1/ping/").json()["project_id"]
    stored: dict[str, dict[str, Any]] = {}
    for user in users:
        memories = memories_of(stack.client, user)
        hashes = Counter(m["hash"] for m in memories)
        out.duplicate_memories += sum(n - 1 for n in hashes.values())
        stored.update({m["id"]: m for m in memories})
    out.memories = len(stored)
    with engine.connect() as conn:
        history = conn.execute(
            sa.text("SELECT memory_id, event, new_memory FROM memory_history WHERE project_id = :p "
                    "ORDER BY created_at, id"),
            {"p": project_id},
        ).all()
    touched = set(stored)  # the memories of these scopes now, and every memory these jobs touched
    with engine.connect() as conn:
        for start in range(0, len(job_ids), 500):
            query = sa.text("SELECT memory_id FROM memory_events WHERE job_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            touched.update(conn.execute(query, {"ids": job_ids[start : start + 500]}).scalars())
    last: dict[str, Any] = {}
    for row in history:
        if row.memory_id in touched:
            last[row.memory_id] = row
    for memory_id, memory in stored.items():
        row = last.get(memory_id)
        if row is None or row.event == "DELETE" or row.new_memory != memory["memory"]:
            out.history_mismatches.append(f"{memory_id}: store {memory['memory']!r}, history ends {row}")
    stored_users = {m["user_id"] for m in stored.values()}
    for memory_id, row in last.items():
        if memory_id not in stored and row.event != "DELETE":
            out.orphan_histories.append(f"{memory_id}: gone from the store, history ends {tuple(row)}")
    assert stored_users <= set(users)
    return out


def add_body(user: str, text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "user_id": user}


def post_batches(stack: Stack, bodies: list[dict[str, Any]], size: int = 50) -> list[str]:
    """Submit through ``POST /v1/batches/`` (fewer requests than one add each); the jobs' event ids."""
    event_ids: list[str] = []
    for start in range(0, len(bodies), size):
        response = stack.client.post("/v1/batches/", json=bodies[start : start + size])
        assert response.status_code == 202, response.text
        answer = response.json()
        assert not answer["rejected"], answer["rejected"]
        event_ids += [e for e in answer["event_ids"] if e]
    return event_ids


OPEN_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def every_route(client: httpx.Client, ids: dict[str, str]) -> list[tuple[str, str, int, str, str | None]]:
    """Call every operation of the OpenAPI schema once with plausible input aimed at ``ids`` (a decoy
    user's memory, job, batch, export, project): ``[(method, path, status, body head, Retry-After)]``."""
    schema = client.get("/openapi.json").json()
    values = {"memory_id": ids["memory_id"], "event_id": ids["event_id"], "batch_id": ids.get("batch_id", "x"),
              "entity_type": "user", "entity_name": ids["user_id"], "entity_id": ids["user_id"],
              "project_id": ids.get("project_id", "x")}
    scope = {"user_id": ids["user_id"]}
    body = {"messages": "I like tea.", **scope, "filters": scope, "query": "tea", "text": "Likes green tea",
            "memories": [{"memory_id": ids["memory_id"], "text": "Likes tea"}], "memory_id": ids["memory_id"],
            "memory_export_id": ids.get("export_id", "x"), "schema": "{}", "url": "https://example.com/hook",
            "name": "hook", "event_types": ["memory_add"]}
    results = []
    for path, operations in schema["paths"].items():
        if path in OPEN_ROUTES:
            continue
        url = re.sub(r"{(\w+)}", lambda m: str(values.get(m.group(1), "x")), path)
        for method in operations:
            response = client.request(method.upper(), url, json=body if method in ("post", "put", "patch",
                                                                                    "delete") else None,
                                      params=scope if method in ("get", "delete") else None)
            results.append((method.upper(), path, response.status_code, response.text[:200],
                            response.headers.get("retry-after")))
    return results
