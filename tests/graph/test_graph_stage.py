"""The graph stage of a job without Celery: real SQL, real shard file, the offline LLM, the real embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.container import Container
from engram.graph.kuzu_store import KuzuConfig, KuzuGraphStore
from engram.graph.routing import GraphNotOwned, WrongShard
from engram.llm.heuristic import HeuristicLLM
from engram.sql.branches import BranchStore
from engram.sql.jobs import Job
from schemas.jobs import Stage
from tests.graph.conftest import triples
from workers.graph import graph_work, own_store


@pytest.fixture
def graph(container: Container, tmp_path: Path, backend: str) -> Iterator[KuzuGraphStore]:
    store = KuzuGraphStore(KuzuConfig(path=tmp_path / "graph", shard=0, backend=backend))  # type: ignore[arg-type]
    container.__dict__["graph_store"] = store  # what a graph worker's container holds
    yield store
    store.close()


def embedded_job(c: Container, job_id: str, request: dict[str, Any], facts: list[str]) -> Job:
    c.jobs.create(job_id, "p1", request, {"user_id": request.get("user_id", "")})
    c.jobs.complete_stage(job_id, Stage.EXTRACTED, facts=facts)
    c.jobs.complete_stage(job_id, Stage.EMBEDDED, embeddings=c.embedder.embed(facts))
    BranchStore(c.engine).open_graph_branch(job_id)
    job = c.jobs.get(job_id)
    assert job is not None
    return job


class ExplodingLLM(HeuristicLLM):
    def extract_graph(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a job whose changes were applied must not be planned again")


def test_a_redelivered_job_finds_its_marker_and_plans_nothing(container: Container, graph: KuzuGraphStore) -> None:
    job = embedded_job(container, "job-1", {"messages": "I live in Paris.", "user_id": "ana"}, ["Lives in Paris"])
    events = graph_work(container, graph, job)
    assert events == {"added": [{"source": "ana", "relationship": "lives_in", "destination": "Paris"}], "deleted": []}
    # Died after the graph commit, before SQL heard of it: the redelivery only reports what was applied.
    container.__dict__["llm"] = ExplodingLLM()
    assert graph_work(container, graph, job) == events
    assert triples(graph, "p1", user_id="ana") == [("ana", "lives_in", "Paris")]


def test_raw_messages_become_relations_when_infer_is_false(container: Container, graph: KuzuGraphStore) -> None:
    request = {"messages": [{"role": "user", "content": "I work at Acme Corp"}], "user_id": "raw", "infer": False}
    job = embedded_job(container, "job-raw", request, ["I work at Acme Corp"])
    assert graph_work(container, graph, job)["added"] == [
        {"source": "raw", "relationship": "works_at", "destination": "Acme Corp"}
    ]


def test_a_job_with_nothing_to_graph_writes_nothing(container: Container, graph: KuzuGraphStore) -> None:
    job = embedded_job(container, "job-q", {"messages": "What time is it?", "user_id": "ana"}, [])
    assert graph_work(container, graph, job) == {"added": [], "deleted": []}
    assert graph.applied("job-q") is None and graph.entities("p1", {}) == []


def test_only_the_owner_of_the_shard_may_touch_it(container: Container, graph: KuzuGraphStore) -> None:
    assert own_store(container, 0) is graph
    with pytest.raises(WrongShard, match="graph.1 reached the worker of graph.0"):
        own_store(container, 1)
    del container.__dict__["graph_store"]  # an API process or a default worker: owns no shard
    with pytest.raises(GraphNotOwned, match="not enabled"):
        own_store(container, 0)
    settings = container.settings.model_copy(
        update={"graph_store": container.settings.graph_store.model_copy(update={"provider": "kuzu"})}
    )
    with pytest.raises(GraphNotOwned, match="owns no graph shard"):
        _ = Container(settings).graph_store
