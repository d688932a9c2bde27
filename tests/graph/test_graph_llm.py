"""Graph prompts' output models tolerate provider shapes; the offline LLM's graph rules are deterministic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engram.errors import PermanentError
from engram.llm.chat import ChatLLM
from engram.llm.heuristic import HeuristicLLM
from engram.llm.heuristic_graph import parse_fact
from schemas.graph import ExtractedGraph, QueryEntities, RelationDeletions, Triple
from schemas.memories import Message

T = Triple.model_validate


@pytest.mark.parametrize(
    "answer",
    [
        {"entities": [{"name": "Ana", "type": "person"}, {"name": "Paris", "type": "city"}],
         "relations": [{"source": "Ana", "relationship": "lives in", "destination": "Paris"}]},
        {"nodes": [{"entity": "Ana", "entity_type": "Person"}, {"id": "Paris", "label": "City"}],
         "edges": [{"from": "Ana", "relation": "LIVES_IN", "to": "Paris"}]},
        {"entity_type_map": {"Ana": "person", "Paris": "city"},
         "relationships": [{"source_entity": {"name": "Ana"}, "relation_type": "lives-in", "target": "Paris"}]},
        {"entities": ["Ana", "Paris"], "triples": [["Ana", "Lives In", "Paris"]]},
    ],
)
def test_extraction_shapes_of_different_providers(answer: dict[str, Any]) -> None:
    graph = ExtractedGraph.model_validate(answer)
    assert [t.model_dump() for t in graph.relations] == [
        {"source": "Ana", "relationship": "lives_in", "destination": "Paris"}
    ]
    assert [e.name for e in graph.entities] == ["Ana", "Paris"]


def test_unusable_items_are_dropped_not_fatal() -> None:
    graph = ExtractedGraph.model_validate(
        {"relations": [{"source": "Ana", "relationship": "likes"}, {"source": " ", "relationship": "x",
                                                                   "destination": "y"},
                       {"source": "Ana", "relationship": "likes", "destination": "tea"}, 42],
         "entities": [None, {"type": "person"}, "tea"]}
    )
    assert [t.key() for t in graph.relations] == [("ana", "likes", "tea")]
    assert [e.name for e in graph.entities] == ["tea"]
    assert RelationDeletions.model_validate({"to_delete": [["a", "b", "c"]]}).delete == [T(["a", "b", "c"])]
    assert RelationDeletions.model_validate([]).delete == []
    assert QueryEntities.model_validate({"nodes": [{"name": "Paris"}, "Ana"]}).entities == ["Paris", "Ana"]


class ScriptedLLM(ChatLLM):
    def __init__(self, *answers: Any) -> None:
        self.answers = [a if isinstance(a, str) else json.dumps(a) for a in answers]
        self.calls: list[list[dict[str, str]]] = []

    def complete(self, messages: list[dict[str, str]]) -> str:
        self.calls.append(messages)
        return self.answers.pop(0)


def test_chat_llm_graph_prompts() -> None:
    llm = ScriptedLLM(
        "```json\n" + json.dumps({"nodes": ["Ana"], "edges": [{"source": "ana", "type": "lives_in", "target": "Oslo"}]})
        + "\n```",
        {"delete": [{"source": "ana", "relationship": "lives_in", "destination": "paris"},
                    {"source": "ana", "relationship": "invented", "destination": "relation"}]},
        {"entities": ["ana", "Oslo"]},
    )
    graph = llm.extract_graph([Message(role="user", content="I moved to Oslo")], ["Lives in Oslo"], subject="ana")
    assert graph.relations == [T({"source": "ana", "relationship": "lives_in", "destination": "Oslo"})]
    assert '"ana"' in llm.calls[0][0]["content"] and "Lives in Oslo" in llm.calls[0][1]["content"]
    existing = [T(["ana", "lives_in", "Paris"]), T(["ana", "likes", "tea"])]
    # Only existing relations can be deleted, as they are stored (case aside); invented ones are ignored.
    assert llm.decide_relation_deletions(existing, graph.relations, text="Lives in Oslo", subject="ana") == [
        existing[0]
    ]
    assert llm.extract_query_entities("where do I live?", subject="ana") == ["ana", "Oslo"]
    assert ScriptedLLM().decide_relation_deletions([], [], text="x", subject="ana") == []  # nothing to ask


def test_chat_llm_malformed_twice_is_permanent() -> None:
    with pytest.raises(PermanentError):
        ScriptedLLM("not json", "still not").extract_graph([], [], subject="ana")


@pytest.mark.parametrize(
    ("fact", "expected", "negated"),
    [
        ("Name is Ana", [("ana", "name_is", "Ana")], False),
        ("Lives in Paris", [("ana", "lives_in", "Paris")], False),
        ("Works at a hospital now", [("ana", "works_at", "hospital")], False),
        ("Likes tea and coffee", [("ana", "likes", "tea"), ("ana", "likes", "coffee")], False),
        ("Favorite color is blue", [("ana", "favorite_color_is", "blue")], False),
        ("Is allergic to penicillin", [("ana", "allergic_to", "penicillin")], False),
        ("I live in Lisbon", [("ana", "lives_in", "Lisbon")], False),  # a raw message (infer=false)
        ("No longer lives in Paris", [("ana", "lives_in", "Paris")], True),
        ("Does not like coffee anymore", [("ana", "likes", "coffee")], True),
        ("Thinks that the weather today is really quite nice", [], False),
    ],
)
def test_heuristic_facts_to_relations(fact: str, expected: list[tuple[str, str, str]], negated: bool) -> None:
    parsed = parse_fact(fact, "ana")
    assert [(t.source, t.relationship, t.destination) for t in parsed.triples] == expected
    assert parsed.negated is negated


def test_heuristic_graph_decisions() -> None:
    llm = HeuristicLLM()
    graph = llm.extract_graph([], ["Lives in Berlin", "Likes jazz", "No longer works at Acme"], subject="ana")
    assert [t.key() for t in graph.relations] == [("ana", "lives_in", "berlin"), ("ana", "likes", "jazz")]
    assert {e.name: e.type for e in graph.entities} == {"ana": "user", "Berlin": "location", "jazz": "thing"}
    existing = [T(["ana", "lives_in", "Paris"]), T(["ana", "likes", "tea"]), T(["ana", "works_at", "Acme"]),
                T(["bob", "lives_in", "Rome"])]
    doomed = llm.decide_relation_deletions(existing, graph.relations, text="Lives in Berlin\nNo longer works at Acme",
                                           subject="ana")
    assert sorted(t.key() for t in doomed) == [("ana", "lives_in", "paris"), ("ana", "works_at", "acme")]
    assert llm.extract_query_entities("Where does Ana live?", subject="ana") == ["Ana", "live"]
    assert llm.extract_query_entities("what is my job", subject="u1") == ["job", "u1"]
