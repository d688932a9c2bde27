"""The offline heuristic LLM: deterministic extraction and decisions."""

from __future__ import annotations

from engram.llm.heuristic import HeuristicLLM, statement_to_fact, subject_key
from engram.ports import ExistingMemory
from schemas.memories import Message


def user(text: str) -> Message:
    return Message(role="user", content=text)


def test_first_person_statements_become_facts() -> None:
    facts = HeuristicLLM().extract_facts(
        [
            user("Hi! My name is Ana. I live in Paris and I love hiking."),
            Message(role="assistant", content="I love that you hike! I am an assistant."),
            user("What's the weather like? I'm a vegetarian."),
        ]
    )
    assert facts == ["Name is Ana", "Lives in Paris", "Loves hiking", "Is a vegetarian"]


def test_questions_small_talk_and_third_person_are_ignored() -> None:
    facts = HeuristicLLM().extract_facts([user("Can you help me? The sky is blue. Thanks.")])
    assert facts == []


def test_extraction_is_deterministic_and_deduplicated() -> None:
    messages = [user("I play chess. I play chess.")]
    assert HeuristicLLM().extract_facts(messages) == HeuristicLLM().extract_facts(messages) == ["Plays chess"]


def test_rewrites() -> None:
    assert statement_to_fact("I have two cats") == "Has two cats"
    assert statement_to_fact("I don't eat meat anymore") == "Does not eat meat anymore"
    assert statement_to_fact("My favourite colour is green") == "Favourite colour is green"
    assert statement_to_fact("I watch movies with my sister") == "Watches movies with their sister"
    assert subject_key("Is a doctor") == "is doctor"
    assert statement_to_fact("Big news: I live in Porto now") == "Lives in Porto now"


def test_decisions_none_update_delete_add() -> None:
    llm = HeuristicLLM()
    existing = [
        ExistingMemory("0", "Lives in Paris", 0.5),
        ExistingMemory("1", "Eats meat", 0.7),
        ExistingMemory("2", "Loves hiking", 0.99),
    ]
    facts = ["Lives in Berlin", "Does not eat meat anymore", "Loves hiking", "Plays the cello"]
    similarity = [
        [0.55, 0.1, 0.2],
        [0.1, 0.75, 0.1],
        [0.2, 0.1, 0.99],
        [0.1, 0.1, 0.2],
    ]
    decisions = llm.decide_updates(facts, existing, similarity=similarity)
    summary = [(d.event, d.id, d.text) for d in decisions]
    assert summary == [
        ("UPDATE", "0", "Lives in Berlin"),
        ("DELETE", "1", "Eats meat"),
        ("NONE", "new:2", "Loves hiking"),
        ("ADD", "new:3", "Plays the cello"),
    ]
    assert decisions[0].old_memory == "Lives in Paris"


def test_an_existing_memory_is_updated_at_most_once() -> None:
    existing = [ExistingMemory("0", "Lives in Paris", 0.6)]
    decisions = HeuristicLLM().decide_updates(
        ["Lives in Rome", "Lives in Oslo"], existing, similarity=[[0.6], [0.6]]
    )
    assert [d.event for d in decisions] == ["UPDATE", "ADD"]
