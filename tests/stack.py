"""A real engram deployment for end-to-end tests: an API server process and a Celery worker process
on loopback, with their own SQL file (or PostgreSQL database), vector directory and Redis key prefix.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 120
JOB_TIMEOUT_SECONDS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_alive(pgid: int) -> bool:
    """Whether a thread of this process group still runs (Linux /proc). Threads, not processes: a process
    whose main thread is a zombie still holds its files (and locks) until its last thread has exited."""
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Stack:
    def __init__(self, workdir: Path, redis_url: str, sql_url: str | None = None, **env: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ENGRAM_ENVIRONMENT": "test",
            "ENGRAM_SQL__URL": sql_url or f"sqlite:///{workdir / 'engram.db'}",
            "ENGRAM_VECTOR_STORE__PATH": str(workdir / "vectors"),
            "ENGRAM_REDIS__URL": redis_url,
            "ENGRAM_REDIS__KEY_PREFIX": f"engram-e2e-{uuid.uuid4().hex[:8]}:",
            "ENGRAM_PIPELINE__RETRY_BACKOFF_SECONDS": "0.2",
            "ENGRAM_PIPELINE__RETRY_BACKOFF_MAX_SECONDS": "1",
            "ENGRAM_PIPELINE__LOCK_RETRY_SECONDS": "0.05",
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.graph_workers: dict[int, subprocess.Popen[bytes]] = {}  # the latest started per shard
        self.api_key = ""
        self.client = httpx.Client(base_url=self.base_url, timeout=60)

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=self.workdir, env={**self.env, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_worker(
        self, concurrency: int = 2, queues: str = "llm,default,webhooks", name: str = "worker"
    ) -> subprocess.Popen[bytes]:
        proc = self._spawn(name, [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-Q", queues,
                                  "-n", f"{name}@%h", "-c", str(concurrency), "-Ofair", "--without-mingle",
                                  "--without-gossip", "--loglevel=INFO"])
        self._wait(lambda: b"ready." in (self.workdir / f"{name}.log").read_bytes(), name, proc)
        return proc

    def start_graph_worker(self, shard: int, name: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        """The only process that may open graph shard ``shard`` (``-Q graph.<n> -c 1``); log ``<name>.log``."""
        name = name or f"graph{shard}"
        proc = self._spawn(name, [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-Q", f"graph.{shard}",
                                  "-c", "1", "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
                                  "--loglevel=INFO"], env={"ENGRAM_GRAPH_STORE__SHARD": str(shard), **env})
        self._wait(lambda: b"ready." in (self.workdir / f"{name}.log").read_bytes(), name, proc)
        self.graph_workers[shard] = proc
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal a process started here and all its children (a worker and its pool); return once all are gone."""
        os.killpg(proc.pid, sig)
        proc.wait(30)
        deadline = time.monotonic() + 30
        while group_alive(proc.pid) and time.monotonic() < deadline:  # the pool outlives its parent briefly
            time.sleep(0.05)

    def start_api(self) -> subprocess.Popen[bytes]:
        proc = self._spawn("api", [str(BIN / "uvicorn"), "--factory", "api.main:create_app", "--host", "127.0.0.1",
                                   "--port", str(self.port), "--log-level", "warning"])
        self._wait(self._healthy, "api", proc)
        return proc

    def start(self) -> Stack:
        self.start_api()  # migrates the schema before the worker starts
        self.api_key = self.new_key()
        self.client.headers["Authorization"] = f"Token {self.api_key}"
        self.start_worker()
        return self

    def new_key(self) -> str:
        """A key for the development project, made by the real CLI against this stack's SQL."""
        done = subprocess.run([str(BIN / "engram"), "bootstrap", "--print-key"], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip().splitlines()[-1]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "ENGRAM_API_URL": self.base_url, "ENGRAM_API_KEY": self.api_key}
        return subprocess.run([str(BIN / "engram"), *args], cwd=self.workdir, env=env, capture_output=True,
                              text=True, timeout=120)

    def _healthy(self) -> bool:
        try:
            return self.client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, ready: Any, name: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} did not start in {START_TIMEOUT_SECONDS}s:\n{self.log(name)}")

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self) -> None:
        self.client.close()
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    # -- client helpers ---------------------------------------------------------------------
    def add(self, body: dict[str, Any]) -> str:
        response = self.client.post("/v1/memories/", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["event_id"])

    def wait_job(self, event_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/event/{event_id}/").json()
            if job["status"] in ("SUCCEEDED", "FAILED"):
                return job  # type: ignore[no-any-return]
            time.sleep(0.1)
        raise TimeoutError(f"job {event_id} did not end:\n{self.log('worker')}")

    def memories(self, **scope: str) -> list[dict[str, Any]]:
        response = self.client.get("/v1/memories/", params=scope)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]
