"""Graph fixtures: real shard files of the backend under test.

kuzu and ladybug cannot share a process (both register the same native types), so this process
tests one backend, ``ENGRAM_TEST_GRAPH_BACKEND`` (default kuzu); ``test_ladybug.py`` runs the same
tests again in a child process with ladybug.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.embedding.local import SentenceTransformerEmbedder
from engram.graph.extract import plan_graph
from engram.graph.kuzu_store import KuzuConfig, KuzuGraphStore
from engram.graph.port import GraphChanges
from engram.llm.heuristic import HeuristicLLM
from engram.scope import Scope
from schemas.memories import Message

BACKEND = os.environ.get("ENGRAM_TEST_GRAPH_BACKEND", "kuzu")


@pytest.fixture
def backend() -> str:
    return BACKEND


@pytest.fixture
def store(tmp_path: Path, backend: str) -> Iterator[KuzuGraphStore]:
    s = KuzuGraphStore(KuzuConfig(path=tmp_path / "graph", shard=0, backend=backend))  # type: ignore[arg-type]
    yield s
    s.close()


def ingest(
    store: KuzuGraphStore,
    embedder: SentenceTransformerEmbedder,
    scope: Scope,
    facts: list[str],
    *,
    job_id: str | None = None,
    threshold: float = 0.9,
) -> GraphChanges:
    """What the graph stage does for one job: plan with the offline LLM, then apply."""
    changes = plan_graph(
        messages=[Message(role="user", content=". ".join(facts))],
        facts=facts,
        scope=scope,
        store=store,
        llm=HeuristicLLM(),
        embedder=embedder,
        dedupe_threshold=threshold,
    )
    store.apply(job_id or str(uuid.uuid4()), changes)
    return changes


def triples(store: KuzuGraphStore, project_id: str, **ids: str) -> list[tuple[str, str, str]]:
    return sorted((r.source, r.relationship, r.destination) for r in store.relations(project_id, ids))
