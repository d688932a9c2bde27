"""Processes under test: the LLM stand-in, and a real engram deployment on loopback.

The engram stack follows ``tests/stack.py``: an API process (uvicorn) and Celery worker processes with
their own SQLite file, LanceDB directory and Redis key prefix (Redis database 11 by default).
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import BIN, CHILD_MAX_SECONDS, PYTHON, ROOT, Child, base_env, free_port


@dataclass(frozen=True)
class WorkerSpec:
    """One ``celery worker`` command line."""

    name: str
    queues: str
    pool: str  # "prefork" or "threads"
    concurrency: int

    def args(self) -> list[str]:
        args = [
            str(BIN / "celery"),
            "-A",
            "workers.celery_app",
            "worker",
            "-Q",
            self.queues,
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "-n",
            f"{self.name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=INFO",
        ]
        if self.pool == "prefork":
            args.append("-Ofair")
        return args


# The Procfile's worker: both queues, two prefork processes.
PREFORK = (WorkerSpec("worker", "llm,default", "prefork", 2),)
# The Procfile's: LLM-bound stages on two processes of 16 threads; embedding (CPU) on one prefork process.
THREADED = (
    WorkerSpec("worker-llm", "llm", "threads", 16),
    WorkerSpec("worker-llm2", "llm", "threads", 16),
    WorkerSpec("worker-default", "default", "prefork", 1),
)
WORKER_CONFIGS = {"prefork": PREFORK, "threads": THREADED}


def _logged_ready(log_path: Path) -> bool:
    return b" ready." in log_path.read_bytes()


class StandIn:
    """The OpenAI-compatible LLM stand-in in its own process."""

    def __init__(self, workdir: Path, latency_ms: float) -> None:
        self.port = free_port()
        self.latency_ms = latency_ms
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        args = [
            PYTHON,
            "-m",
            "bench.stand_in",
            "--port",
            str(self.port),
            "--latency-ms",
            str(latency_ms),
            "--max-seconds",
            str(CHILD_MAX_SECONDS),
        ]
        self.child = Child(f"stand-in-{int(latency_ms)}ms", args, env=base_env(), cwd=ROOT, log_dir=workdir)
        self.child.wait_until(self._ready, timeout=60)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def calls(self) -> dict[str, int]:
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json()["calls"])

    def stop(self) -> None:
        self.child.stop()


class EngramStack:
    """API + workers of engram in ``workdir``; everything they write stays there (and under one Redis prefix)."""

    def __init__(self, workdir: Path, redis_url: str, *, llm_base_url: str | None = None, **env: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.key_prefix = f"engram-bench-{uuid.uuid4().hex[:8]}:"
        llm = (
            {
                "ENGRAM_LLM__PROVIDER": "litellm",
                "ENGRAM_LLM__MODEL": "openai/bench-stand-in",
                "ENGRAM_LLM__API_BASE": llm_base_url,
                "ENGRAM_LLM__API_KEY": "bench",
                "ENGRAM_LLM__TIMEOUT_SECONDS": "60",
            }
            if llm_base_url
            else {"ENGRAM_LLM__PROVIDER": "heuristic"}
        )
        self.env = base_env(
            ENGRAM_ENVIRONMENT="test",
            ENGRAM_SQL__URL=f"sqlite:///{workdir / 'engram.db'}",
            ENGRAM_VECTOR_STORE__PATH=str(workdir / "vectors"),
            ENGRAM_REDIS__URL=redis_url,
            ENGRAM_REDIS__KEY_PREFIX=self.key_prefix,
            **llm,
            **env,
        )
        self.api: Child | None = None
        self.workers: dict[str, Child] = {}
        self.api_key = ""
        self.project_id = ""
        self.client = httpx.Client(base_url=self.base_url, timeout=120)

    # -- lifecycle -------------------------------------------------------------------------------
    def settings(self) -> Any:
        """The same settings the processes read, for in-process use (bulk loads, direct store searches)."""
        from config.settings import Settings

        keys = {k: v for k, v in self.env.items() if k.startswith("ENGRAM_")}
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update(keys)
        try:
            return Settings()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def bootstrap(self) -> None:
        """Migrate SQL and make a key for the development project (in-process, like ``engram bootstrap``)."""
        from config.container import Container
        from engram.bootstrap import ensure_dev_project

        c = Container(self.settings())
        try:
            c.migrate()
            created = ensure_dev_project(c)
        finally:
            c.close()
        self.api_key, self.project_id = created.key, created.project_id
        self.client.headers["Authorization"] = f"Token {self.api_key}"

    def start_api(self, workers: int = 1) -> Child:
        if not self.api_key:
            self.bootstrap()
        args = [
            str(BIN / "uvicorn"),
            "--factory",
            "api.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ]
        self.api = Child("api", args, env=self.env, cwd=self.workdir, log_dir=self.workdir)
        self.api.wait_until(self._healthy)
        return self.api

    def start_workers(self, specs: tuple[WorkerSpec, ...]) -> None:
        for spec in specs:
            # As the Procfile and the image start them.
            env = {"MALLOC_ARENA_MAX": "2", **self.env}
            child = Child(spec.name, spec.args(), env=env, cwd=self.workdir, log_dir=self.workdir)
            self.workers[spec.name] = child
        for child in self.workers.values():
            child.wait_until(functools.partial(_logged_ready, child.log_path))

    def _healthy(self) -> bool:
        try:
            return self.client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.client.close()
        for child in self.workers.values():
            child.stop()
        if self.api is not None:
            self.api.stop()
        self.purge_redis()

    def purge_redis(self) -> None:
        """Delete every key this stack wrote (queues, locks, rate-limit buckets) from the shared Redis."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            batch = []
            for key in client.scan_iter(match=self.key_prefix + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
            # kombu's fanout/binding keys that do not carry the prefix.
            for key in client.scan_iter(match="_kombu.binding.*" + self.key_prefix + "*", count=1000):
                client.delete(key)
        finally:
            client.close()

    def pids(self) -> dict[str, int]:
        out = {"api": self.api.pid} if self.api else {}
        out.update({name: child.pid for name, child in self.workers.items()})
        return out

    def __enter__(self) -> EngramStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
