"""Stage functions without Celery: extract → embed → plan → apply, on real stores and the real embedder."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from config.container import Container
from engram.llm.heuristic import HeuristicLLM
from engram.scope import Scope
from engram.stages.embed import embed_facts
from engram.stages.extract import extract_facts
from engram.stages.reconcile import WriteOptions, _resolve, apply_plan, exact_scope, plan_changes
from schemas.llm import MemoryDecision
from schemas.memories import Message

SCOPE = Scope("p1", user_id="ana")


def ingest(c: Container, job_id: str, text: str, *, infer: bool = True) -> list[dict]:
    messages = [Message(role="user", content=text)]
    facts = extract_facts(messages, c.llm, infer=infer)
    vectors = embed_facts(facts, c.embedder)
    plan = plan_changes(
        job_id=job_id, facts=facts, vectors=vectors, scope=SCOPE, store=c.vector_store, llm=c.llm,
        embedder=c.embedder, infer=infer, k=5, roles=["user"] * len(facts) if not infer else None,
    )
    events, history = apply_plan(job_id=job_id, plan=plan, vectors=vectors, scope=SCOPE, store=c.vector_store,
                                 options=WriteOptions(metadata={"source": "test"}), first_apply=True)
    c.history.record("p1", history)
    return [e.model_dump() for e in events]


def test_add_then_duplicate_then_contradiction(container: Container) -> None:
    first = ingest(container, "j1", "I live in Paris. I love hiking.")
    assert [(e["event"], e["memory"]) for e in first] == [("ADD", "Lives in Paris"), ("ADD", "Loves hiking")]
    assert ingest(container, "j2", "I love hiking.") == []  # NONE: already known
    third = ingest(container, "j3", "I live in Berlin.")
    assert [(e["event"], e["memory"], e["previous_memory"]) for e in third] == [
        ("UPDATE", "Lives in Berlin", "Lives in Paris")
    ]
    paris_id = first[0]["id"]
    assert third[0]["id"] == paris_id
    stored = container.vector_store.get(paris_id, "p1")
    assert stored is not None and stored.memory == "Lives in Berlin"
    assert stored.metadata == {"source": "test"}
    assert [(h.event, h.new_memory) for h in container.history.for_memory("p1", paris_id)] == [
        ("ADD", "Lives in Paris"), ("UPDATE", "Lives in Berlin")
    ]


def test_negation_deletes(container: Container) -> None:
    added = ingest(container, "j1", "I eat meat.")
    deleted = ingest(container, "j2", "I don't eat meat anymore.")
    assert [(e["event"], e["id"]) for e in deleted] == [("DELETE", added[0]["id"])]
    assert container.vector_store.get(added[0]["id"], "p1") is None


def test_infer_false_stores_messages_verbatim(container: Container) -> None:
    events = ingest(container, "j1", "The sky was grey today, what a day", infer=False)
    assert [(e["event"], e["memory"]) for e in events] == [("ADD", "The sky was grey today, what a day")]
    stored = container.vector_store.get(events[0]["id"], "p1")
    assert stored is not None and stored.metadata["role"] == "user"


def test_applying_a_plan_twice_changes_nothing(container: Container) -> None:
    # As the worker does: the first application appends the ADDs, a redelivery upserts them.
    facts = ["Lives in Paris", "Plays chess"]
    vectors = embed_facts(facts, container.embedder)
    plan = plan_changes(job_id="j1", facts=facts, vectors=vectors, scope=SCOPE, store=container.vector_store,
                        llm=HeuristicLLM(), embedder=container.embedder, infer=True, k=5)
    results = []
    for first_apply in (True, False):
        events, history = apply_plan(job_id="j1", plan=plan, vectors=vectors, scope=SCOPE,
                                     store=container.vector_store, first_apply=first_apply)
        container.history.record("p1", history)
        results.append((events, container.vector_store.list(project_id="p1", where=exact_scope(SCOPE), limit=10)))
    assert results[0][0] == results[1][0]
    assert [(r.id, r.memory) for r in results[0][1]] == [(r.id, r.memory) for r in results[1][1]]
    assert container.vector_store.count(project_id="p1", where=exact_scope(SCOPE)) == 2
    assert sum(len(container.history.for_memory("p1", e.id)) for e in results[0][0]) == 2


class StoreWithoutInsert:
    """A third-party store written before ``insert`` joined the port: everything but ``insert``."""

    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        if name == "insert":
            raise AttributeError(name)
        return getattr(self._store, name)


def test_a_store_without_insert_gets_the_adds_upserted(container: Container) -> None:
    facts = ["Lives in Paris", "Plays chess"]
    vectors = embed_facts(facts, container.embedder)
    store = StoreWithoutInsert(container.vector_store)
    plan = plan_changes(job_id="j1", facts=facts, vectors=vectors, scope=SCOPE, store=store,
                        llm=HeuristicLLM(), embedder=container.embedder, infer=True, k=5)
    events, _ = apply_plan(job_id="j1", plan=plan, vectors=vectors, scope=SCOPE, store=store,
                           first_apply=True)
    assert [e.event for e in events] == ["ADD", "ADD"]
    assert container.vector_store.count(project_id="p1", where=exact_scope(SCOPE)) == 2


def test_llm_ids_are_mapped_back_and_invalid_ones_dropped(container: Container) -> None:
    ingest(container, "j0", "I live in Paris.")
    existing = container.vector_store.list(project_id="p1", where=exact_scope(SCOPE), limit=10)
    decisions = [
        MemoryDecision(id="0", text="Lives in Lyon", event="UPDATE"),
        MemoryDecision(id="0", text="Lives in Nice", event="UPDATE"),  # same memory twice: first wins
        MemoryDecision(id="7", text="ghost", event="DELETE"),  # an id the LLM was never shown
        MemoryDecision(id="b7c1-uuid-invented", text="Has a dog", event="ADD"),
        MemoryDecision(id="new:0", text="Likes tea", event="ADD"),
        MemoryDecision(id="new:1", text="x", event="NONE"),
    ]
    plan = _resolve("j1", decisions, ["Likes tea"], existing, "2026-01-01T00:00:00+00:00")
    assert [(p["event"], p["text"]) for p in plan] == [("UPDATE", "Lives in Lyon"), ("ADD", "Has a dog"),
                                                       ("ADD", "Likes tea")]
    assert plan[0]["memory_id"] == existing[0].id
    assert plan[1]["memory_id"] != plan[2]["memory_id"]
    assert plan[2]["fact_index"] == 0 and "fact_index" not in plan[1]


class CountingLLM(HeuristicLLM):
    """The heuristic LLM, counting the update decisions it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions_asked = 0

    def decide_updates(self, *args: Any, **kwargs: Any) -> list[MemoryDecision]:
        self.decisions_asked += 1
        return super().decide_updates(*args, **kwargs)


def _plan(c: Container, job_id: str, facts: list[str], llm: HeuristicLLM, custom_prompt: str | None = None,
          options: WriteOptions | None = None) -> list:
    vectors = embed_facts(facts, c.embedder)
    plan = plan_changes(job_id=job_id, facts=facts, vectors=vectors, scope=SCOPE, store=c.vector_store, llm=llm,
                        embedder=c.embedder, infer=True, k=5, custom_prompt=custom_prompt)
    apply_plan(job_id=job_id, plan=plan, vectors=vectors, scope=SCOPE, store=c.vector_store, options=options,
               first_apply=True)
    return plan


def test_an_empty_scope_adds_every_fact_without_asking_the_llm(container: Container) -> None:
    llm = CountingLLM()
    skipped = REGISTRY.get_sample_value("engram_update_decisions_skipped_total") or 0.0
    plan = _plan(container, "j1", ["Lives in Paris", "Plays chess"], llm)
    assert [(p["event"], p["text"], p["fact_index"]) for p in plan] == [
        ("ADD", "Lives in Paris", 0), ("ADD", "Plays chess", 1)
    ]
    assert llm.decisions_asked == 0
    assert REGISTRY.get_sample_value("engram_update_decisions_skipped_total") == skipped + 1  # operators see it
    # Once the scope holds memories, every conversation's facts are compared with them.
    assert _plan(container, "j2", ["Plays chess"], llm) == []  # NONE: already known
    assert llm.decisions_asked == 1


def test_a_custom_update_prompt_is_asked_even_for_an_empty_scope(container: Container) -> None:
    llm = CountingLLM()
    _plan(container, "j1", ["Lives in Paris"], llm, custom_prompt="Keep only facts about food.")
    assert llm.decisions_asked == 1


def test_a_scope_of_immutable_memories_only_adds_without_asking(container: Container) -> None:
    _plan(container, "j0", ["Lives in Paris"], HeuristicLLM(), options=WriteOptions(immutable=True))
    llm = CountingLLM()
    # The decision could not touch an immutable memory anyway: the fact is added beside it.
    assert [p["event"] for p in _plan(container, "j1", ["Lives in Berlin"], llm)] == ["ADD"]
    assert llm.decisions_asked == 0
