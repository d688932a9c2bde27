"""The graph store contract on real database files, for every backend (kuzu; ladybug when installed):
entity dedupe, relation add and delete, scope isolation, search with relations, atomic applies.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engram.embedding.local import SentenceTransformerEmbedder
from engram.errors import PermanentError
from engram.graph import reads
from engram.graph.kuzu_store import GraphStoreLocked, KuzuConfig, KuzuGraphStore
from engram.graph.port import GraphChanges, GraphEntity
from engram.llm.heuristic import HeuristicLLM
from engram.scope import Scope
from tests.graph.conftest import ingest, triples

ANA = Scope("p1", "ana")


def search(store: KuzuGraphStore, embedder: SentenceTransformerEmbedder, query: str, **ids: str) -> list[tuple]:
    terms = HeuristicLLM().extract_query_entities(query, subject=ids.get("user_id", ""))
    found = reads.search_relations(
        store, "p1", ids, list(zip(terms, embedder.embed(terms), strict=True)), threshold=0.7, limit=20
    )
    return [(r["source"], r["relationship"], r["destination"]) for r in found]


def test_relations_are_added_once(store: KuzuGraphStore, embedder: SentenceTransformerEmbedder) -> None:
    changes = ingest(store, embedder, ANA, ["Lives in Paris", "Likes tea and coffee"])
    assert changes.events()["added"] == [
        {"source": "ana", "relationship": "lives_in", "destination": "Paris"},
        {"source": "ana", "relationship": "likes", "destination": "tea"},
        {"source": "ana", "relationship": "likes", "destination": "coffee"},
    ]
    again = ingest(store, embedder, ANA, ["Lives in Paris"])  # another job saying the same
    assert again.added == [] and again.deleted == [] and again.entities == []
    assert triples(store, "p1", user_id="ana") == [
        ("ana", "likes", "coffee"),
        ("ana", "likes", "tea"),
        ("ana", "lives_in", "Paris"),
    ]
    assert sorted(e.name for e in store.entities("p1", {"user_id": "ana"})) == ["Paris", "ana", "coffee", "tea"]


def test_entities_dedupe_by_name_and_embedding(store: KuzuGraphStore, embedder: SentenceTransformerEmbedder) -> None:
    ingest(store, embedder, ANA, ["Works at Acme Corp", "Collects vinyl records"])
    # Same name in other case, and names whose embeddings are nearly the same: no new entities.
    changes = ingest(store, embedder, ANA, ["Likes Acme Corporation", "Sells vinyl record", "Works at acme corp"])
    assert changes.entities == []
    assert triples(store, "p1", user_id="ana") == [
        ("ana", "collects", "vinyl records"),
        ("ana", "likes", "Acme Corp"),
        ("ana", "sells", "vinyl records"),
        ("ana", "works_at", "Acme Corp"),
    ]
    # Far apart in meaning, or close but with another number in the name: new entities.
    ingest(store, embedder, ANA, ["Likes jazz", "Likes Room 101"])
    ingest(store, embedder, ANA, ["Likes Room 102"])  # embeds at cosine 0.91 to "Room 101"
    assert sorted(e.name for e in store.entities("p1", {"user_id": "ana"})) == [
        "Acme Corp",
        "Room 101",
        "Room 102",
        "ana",
        "jazz",
        "vinyl records",
    ]


def test_contradicted_relations_are_deleted(store: KuzuGraphStore, embedder: SentenceTransformerEmbedder) -> None:
    ingest(store, embedder, ANA, ["Lives in Paris", "Works at a bakery", "Likes tea"])
    moved = ingest(store, embedder, ANA, ["Lives in Berlin", "Likes coffee"])
    assert moved.events() == {
        "added": [
            {"source": "ana", "relationship": "lives_in", "destination": "Berlin"},
            {"source": "ana", "relationship": "likes", "destination": "coffee"},
        ],
        "deleted": [{"source": "ana", "relationship": "lives_in", "destination": "Paris"}],
    }  # liking coffee does not end liking tea: only single-valued relations are replaced
    denied = ingest(store, embedder, ANA, ["No longer works at the bakery"])
    assert denied.events() == {
        "added": [],
        "deleted": [{"source": "ana", "relationship": "works_at", "destination": "bakery"}],
    }
    assert triples(store, "p1", user_id="ana") == [
        ("ana", "likes", "coffee"),
        ("ana", "likes", "tea"),
        ("ana", "lives_in", "Berlin"),
    ]


def test_scopes_are_isolated(store: KuzuGraphStore, embedder: SentenceTransformerEmbedder) -> None:
    ingest(store, embedder, ANA, ["Lives in Paris"])
    ingest(store, embedder, Scope("p1", "bob"), ["Lives in Rome"])
    ingest(store, embedder, Scope("p2", "ana"), ["Lives in Oslo"])  # same user id, other project
    ingest(store, embedder, Scope("p1", "ana", "planner"), ["Lives in Lisbon"])  # the user with an agent
    # Bob moving does not touch Ana's graph: contradictions stay inside the exact scope.
    ingest(store, embedder, Scope("p1", "bob"), ["Lives in Milan"])
    assert triples(store, "p1", user_id="bob") == [("bob", "lives_in", "Milan")]
    assert triples(store, "p2", user_id="ana") == [("ana", "lives_in", "Oslo")]
    # The ids a read leaves out match any; the ones it gives must match exactly.
    assert triples(store, "p1", user_id="ana") == [("ana", "lives_in", "Lisbon"), ("ana", "lives_in", "Paris")]
    assert triples(store, "p1", user_id="ana", agent_id="planner") == [("ana", "lives_in", "Lisbon")]
    assert triples(store, "p1", user_id="ana", agent_id="") == [("ana", "lives_in", "Paris")]
    # Entities are per exact scope: Ana-with-agent has her own "Paris"-free node set.
    names = {(e.scope.agent_id, e.name) for e in store.entities("p1", {"user_id": "ana"})}
    assert names == {("", "ana"), ("", "Paris"), ("planner", "ana"), ("planner", "Lisbon")}


def test_search_returns_relations_around_the_query_entities(
    store: KuzuGraphStore, embedder: SentenceTransformerEmbedder
) -> None:
    ingest(store, embedder, ANA, ["Lives in Paris", "Works at Acme Corp", "Likes jazz"])
    ingest(store, embedder, Scope("p1", "bob"), ["Lives in Paris", "Plays golf"])
    assert set(search(store, embedder, "where do I live", user_id="ana")) == {
        ("ana", "lives_in", "Paris"),
        ("ana", "works_at", "Acme Corp"),
        ("ana", "likes", "jazz"),
    }  # "I" is Ana: her neighbourhood
    assert search(store, embedder, "Who is at ACME Corporation?", user_id="ana")[0] == ("ana", "works_at", "Acme Corp")
    assert search(store, embedder, "paris", user_id="bob") == [("bob", "lives_in", "Paris")]
    assert search(store, embedder, "quantum chromodynamics", user_id="ana") == []


def test_apply_is_atomic_and_marked(store: KuzuGraphStore, embedder: SentenceTransformerEmbedder) -> None:
    changes = ingest(store, embedder, ANA, ["Lives in Paris"], job_id="job-1")
    assert store.applied("job-1") == changes.events()
    assert store.applied("job-2") is None
    store.apply("job-1", changes)  # a redelivery that slipped past the marker check still adds nothing twice
    assert triples(store, "p1", user_id="ana") == [("ana", "lives_in", "Paris")]
    broken = GraphChanges(
        ANA,
        entities=[
            GraphEntity("e-ok", "Rome", "location", ANA, [0.0] * 384),
            GraphEntity("e-bad", "Oslo", "location", ANA, [0.0] * 3),  # wrong size: the transaction fails
        ],
    )
    with pytest.raises(RuntimeError) as failed:
        store.apply("job-3", broken)
    assert "ROLLBACK" not in str(failed.value)  # the real cause, not a failed clean-up
    assert store.applied("job-3") is None
    assert sorted(e.name for e in store.entities("p1", {})) == ["Paris", "ana"]  # nothing of job-3 stayed
    ingest(store, embedder, ANA, ["Likes tea"], job_id="job-4")  # and the store goes on working
    assert store.applied("job-4") is not None


def test_clear_deletes_only_the_scope(store: KuzuGraphStore, embedder: SentenceTransformerEmbedder) -> None:
    ingest(store, embedder, ANA, ["Lives in Paris"])
    ingest(store, embedder, Scope("p1", "ana", "planner"), ["Lives in Lisbon"])
    ingest(store, embedder, Scope("p1", "bob"), ["Lives in Rome"])
    assert store.clear("p1", {"user_id": "ana"}) == 4
    assert triples(store, "p1", user_id="ana") == []
    assert triples(store, "p1", user_id="bob") == [("bob", "lives_in", "Rome")]
    assert store.clear("p1", {"user_id": "ana"}) == 0


def test_a_second_opener_fails_fast_with_the_owner(store: KuzuGraphStore, tmp_path: Path, backend: str) -> None:
    store.ping()  # this process owns the file now
    other = KuzuGraphStore(KuzuConfig(path=tmp_path / "graph", shard=0, backend=backend))  # type: ignore[arg-type]
    with pytest.raises(GraphStoreLocked, match="open in another process"):
        other.ping()
    script = textwrap.dedent(
        f"""
        from engram.graph.kuzu_store import GraphStoreLocked, KuzuConfig, KuzuGraphStore
        try:
            KuzuGraphStore(KuzuConfig(path={str(tmp_path / "graph")!r}, backend={backend!r})).ping()
        except GraphStoreLocked as exc:
            print("LOCKED", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.startswith("LOCKED") and "only the graph worker of this shard may open it" in out.stdout
    store.close()  # released: the next owner opens it
    other.ping()
    other.close()


def test_a_file_built_for_other_embeddings_is_refused(store: KuzuGraphStore, tmp_path: Path, backend: str) -> None:
    store.ping()  # created with 384-d embeddings
    store.close()
    other = KuzuGraphStore(KuzuConfig(path=tmp_path / "graph", backend=backend, dimensions=768))  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match=r"FLOAT\[384\] entity embeddings but the embedder gives FLOAT\[768\]"):
        other.ping()
    other.close()
    KuzuGraphStore(KuzuConfig(path=tmp_path / "graph", backend=backend)).ping()  # type: ignore[arg-type]
