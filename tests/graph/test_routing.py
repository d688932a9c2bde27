"""Shard routing: stable scope hashing, graph tasks routed to their shard's queue, and workers refusing
to consume queues that would give a shard file two owners.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from engram.graph.routing import (
    GraphWorkerMisconfigured,
    WrongShard,
    check_owner,
    owned_shard,
    queue_for,
    shard_for,
    shards_for_read,
)
from engram.scope import Scope
from tests.stack import BIN, ROOT
from workers.celery_app import app


def test_shard_is_stable_and_spread() -> None:
    # Fixed values: the mapping must never change between releases, or graphs would be lost.
    assert [shard_for(Scope("p1", f"user-{i}"), 4) for i in range(8)] == [2, 0, 0, 2, 0, 1, 2, 0]
    assert shard_for(Scope("p1", "ana"), 1) == 0
    counts = Counter(shard_for(Scope("p1", f"user-{i}"), 4) for i in range(2000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 400
    # Agent and run ids do not move a user's graph: a search naming only the user finds all of it.
    assert shard_for(Scope("p1", "ana", "planner", "r1"), 8) == shard_for(Scope("p1", "ana"), 8)


def test_reads_go_to_the_users_shard_or_everywhere() -> None:
    assert shards_for_read("p1", "ana", 4) == [shard_for(Scope("p1", "ana"), 4)]
    assert shards_for_read("p1", None, 4) == [0, 1, 2, 3]  # only an agent or run id: any shard may hold it


def test_graph_tasks_are_routed_by_the_shard_they_name() -> None:
    router = app.amqp.router
    assert router.route({}, "engram.graph.ingest", kwargs={"job_id": "j", "shard": 3})["queue"].name == "graph.3"
    assert router.route({}, "engram.graph.read", kwargs={"shard": 0, "op": "search"})["queue"].name == "graph.0"
    assert router.route({}, "engram.reconcile", args=["j"])["queue"].name == "llm"


def test_a_worker_owns_at_most_one_shard() -> None:
    assert owned_shard(["llm", "default"], 2, None, 4) is None
    assert owned_shard(["graph.2"], 1, None, 4) == 2
    assert owned_shard(["graph.2"], 1, 2, 4) == 2
    bad = [
        (["graph.0", "graph.1"], 1, None, "one shard"),
        (["graph.0"], 2, None, "concurrency 1"),
        (["graph.0", "llm"], 1, None, "consumes only graph.0"),
        (["graph.1"], 1, 0, "SHARD=0 but the worker consumes graph.1"),
        (["graph.7"], 1, None, "not a graph queue of 4"),
        (["default"], 2, 1, "consumes no graph queue"),
    ]
    for queues, concurrency, configured, message in bad:
        with pytest.raises(GraphWorkerMisconfigured, match=message):
            owned_shard(queues, concurrency, configured, 4)
    check_owner(1, 1)
    with pytest.raises(WrongShard):
        check_owner(1, 2)
    assert queue_for(5) == "graph.5"


def test_a_misconfigured_graph_worker_refuses_to_start(tmp_path: Path, redis_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ENGRAM_ENVIRONMENT": "test", "ENGRAM_REDIS__URL": redis_url,
           "ENGRAM_SQL__URL": f"sqlite:///{tmp_path / 'engram.db'}", "ENGRAM_GRAPH_STORE__SHARDS": "2"}
    done = subprocess.run([str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-Q", "graph.1", "-c", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "refusing to start: a graph worker runs with concurrency 1 (-c 1), not 2" in done.stderr + done.stdout
