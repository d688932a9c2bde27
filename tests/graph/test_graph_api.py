"""The API side of graph memory in-process, with no graph worker running: clear answers, never a hang."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from config.container import Container
from engram.bootstrap import ensure_dev_project
from engram.graph.query import clear_scope, relations_for_search
from engram.graph.routing import shard_for
from engram.llm.heuristic import HeuristicLLM
from engram.ports import Embedder
from engram.scope import Scope
from tests.conftest import make_settings


def client_for(tmp_path: Path, redis_url: str, embedder: Embedder, **graph: object) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path, redis_url, graph_store=graph))
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.container.__dict__["embedder"] = embedder  # loaded once per session
        c.headers["Authorization"] = f"Token {ensure_dev_project(app.state.container).key}"
        yield c


@pytest.fixture
def no_graph(tmp_path: Path, redis_url: str, embedder: Embedder) -> Iterator[TestClient]:
    yield from client_for(tmp_path, redis_url, embedder)


@pytest.fixture
def no_worker(tmp_path: Path, redis_url: str, embedder: Embedder) -> Iterator[TestClient]:
    yield from client_for(tmp_path, redis_url, embedder, provider="kuzu", shards=3, query_timeout_seconds=0.3)


def test_graph_routes_without_graph_memory(no_graph: TestClient) -> None:
    response = no_graph.get("/v1/graph/entities/", params={"user_id": "ana"})
    assert response.status_code == 404 and "not enabled" in response.json()["detail"]
    c: Container = no_graph.app.state.container  # type: ignore[attr-defined]
    found = relations_for_search(c, no_graph.app.state.producer, "p1", {"user_id": "ana"}, "x")  # type: ignore[attr-defined]
    assert found == ([], "unavailable: graph memory is not enabled (ENGRAM_GRAPH_STORE__PROVIDER)")
    assert clear_scope(c, no_graph.app.state.producer, "p1", {"user_id": "ana"}) == []  # type: ignore[attr-defined]


def test_a_missing_graph_worker_is_a_quick_503_and_search_says_unavailable(no_worker: TestClient) -> None:
    assert no_worker.get("/v1/graph/relations/").status_code == 400
    response = no_worker.get("/v1/graph/relations/", params={"user_id": "ana"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "no answer from graph." in response.json()["detail"]
    c: Container = no_worker.app.state.container  # type: ignore[attr-defined]
    sender = no_worker.app.state.producer  # type: ignore[attr-defined]
    found, problem = relations_for_search(c, sender, "p1", {"agent_id": "bot"}, "where do I live")
    assert found == [] and problem == "unavailable: no answer from graph.0, graph.1, graph.2 within 0.3s"


def test_clear_scope_queues_one_message_on_the_owning_shard(no_worker: TestClient, redis_url: str) -> None:
    c: Container = no_worker.app.state.container  # type: ignore[attr-defined]
    sender = no_worker.app.state.producer  # type: ignore[attr-defined]
    assert clear_scope(c, sender, "p1", {"app_id": "only-an-app"}) == []  # never a whole project by accident
    shard = shard_for(Scope("p1", "ana"), 3)
    assert clear_scope(c, sender, "p1", {"user_id": "ana", "agent_id": None}) == [shard]
    assert clear_scope(c, sender, "p1", {"run_id": "r1"}) == [0, 1, 2]  # no user: any shard may hold it
    client = redis.Redis.from_url(redis_url)
    prefix = c.settings.redis.key_prefix + "celery:"
    queued = {s: client.llen(f"{prefix}graph.{s}\x06\x166") for s in range(3)}  # graph writes: priority 6
    assert queued == {s: 2 if s == shard else 1 for s in range(3)}
    client.delete(*(f"{prefix}graph.{s}\x06\x166" for s in range(3)))
    client.close()


class SlowLLM(HeuristicLLM):
    def extract_query_entities(self, query: str, *, subject: str) -> list[str]:
        time.sleep(1.0)
        return super().extract_query_entities(query, subject=subject)


def test_a_slow_llm_does_not_hold_the_search(no_worker: TestClient) -> None:
    c: Container = no_worker.app.state.container  # type: ignore[attr-defined]
    c.__dict__["llm"] = SlowLLM()
    found = relations_for_search(c, no_worker.app.state.producer, "p1", {"user_id": "ana"}, "x",  # type: ignore[attr-defined]
                                 timeout_seconds=0.2)
    assert found == ([], "unavailable: the query's entities took the LLM longer than 0.2s")
