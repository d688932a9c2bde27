"""Contention: 50 concurrent adds of one fact for one scope make one memory (the scope lock serialises
reconcile); 50 scopes at once reconcile side by side (no global lock).

The LLM is the loopback stub answering slowly, so each reconcile holds its scope lock for a visible
while (the update decision is asked under the lock). The stub sees when each decision call starts and
ends: calls for one scope never overlap, calls for different scopes do. Concurrency, not speed, is
asserted. CI: 50 + 50 jobs; ``--soak``: 200 + 200.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.llm_stub import LLMStub, StubCall, litellm_env
from tests.reliability.helpers import add_body, all_terminal, check_invariants, memories_of, sql_engine, wait_until
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.fault]
SLOW_SECONDS = 0.25


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStub]:
    with LLMStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, llm: LLMStub) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("contention"),
        redis_url,
        **litellm_env(llm, timeout_seconds=10),
        ENGRAM_PIPELINE__LOCK_RETRY_SECONDS="0.25",  # the default (the stack's 0.05 makes waiting tasks churn)
    )
    try:
        s.start_api()
        s.api_key = s.new_key()
        s.client.headers["Authorization"] = f"Token {s.api_key}"
        s.start_worker(concurrency=4)  # enough slots for reconciles of different scopes to meet
        yield s
    finally:
        s.stop()


def submit_concurrently(stack: Stack, bodies: list[dict[str, object]]) -> list[str]:
    with ThreadPoolExecutor(25) as pool:
        return list(pool.map(stack.add, bodies))


def decision_calls(llm: LLMStub) -> list[StubCall]:
    return [c for c in llm.calls if "NEW FACTS:" in json.dumps(c.body)]


def overlaps(calls: list[StubCall]) -> int:
    """How many pairs of these calls were in flight at the same time."""
    spans = sorted((c.at, c.finished or c.at) for c in calls)
    return sum(1 for i, (_, end) in enumerate(spans) for start, _ in spans[i + 1 :] if start < end)


def test_one_fact_fifty_times_for_one_scope_is_one_memory(stack: Stack, llm: LLMStub, soak: bool) -> None:
    count = 200 if soak else 50
    llm.reset()
    llm.set_mode(f"slow:{SLOW_SECONDS}")
    engine = sql_engine(stack)
    event_ids = submit_concurrently(stack, [add_body("one-scope", "I am allergic to penicillin.")] * count)
    wait_until(all_terminal(engine, event_ids), "every job ended", 600 if soak else 240, 0.5)
    out = check_invariants(stack, engine, event_ids)
    stored = memories_of(stack.client, "one-scope")
    same_scope_overlaps = overlaps(decision_calls(llm))
    waits = (stack.workdir / "worker.log").read_text(errors="replace").count("retry: Retry")
    print(f"\nRELIABILITY contention-one-scope: {count} concurrent adds; {out.summary()}; "
          f"overlapping decisions in the scope: {same_scope_overlaps}; busy-scope retries (cumulative): {waits}")
    assert out.statuses["SUCCEEDED"] == count, out.summary()
    assert [m["memory"] for m in stored] == ["Is allergic to penicillin"]
    assert out.duplicate_memories == 0 and not out.history_mismatches and not out.orphan_histories
    assert same_scope_overlaps == 0  # the scope lock let one reconcile decide at a time
    events = [e for job_id in event_ids for e in stack.client.get(f"/v1/event/{job_id}/").json()["results"]]
    assert [e["event"] for e in events] == ["ADD"]  # one ADD; the others decided NONE (no result)
    engine.dispose()


def test_fifty_scopes_reconcile_side_by_side(stack: Stack, llm: LLMStub, soak: bool) -> None:
    count = 200 if soak else 50
    engine = sql_engine(stack)
    # Each scope holds a memory first: the update decision is only asked where there is one to compare with.
    seeded = submit_concurrently(stack, [add_body(f"scope-{i}", "I live in Oslo.") for i in range(count)])
    wait_until(all_terminal(engine, seeded), "every seeding job ended", 600 if soak else 240, 0.5)
    llm.reset()
    llm.set_mode(f"slow:{SLOW_SECONDS}")
    event_ids = submit_concurrently(stack, [add_body(f"scope-{i}", "I am allergic to penicillin.")
                                            for i in range(count)])
    wait_until(all_terminal(engine, event_ids), "every job ended", 600 if soak else 240, 0.5)
    out = check_invariants(stack, engine, event_ids)
    decisions = decision_calls(llm)
    cross_scope_overlaps = overlaps(decisions)
    print(f"\nRELIABILITY contention-many-scopes: {count} scopes at once; {out.summary()}; "
          f"overlapping reconcile decisions across scopes: {cross_scope_overlaps}")
    assert len(decisions) == count  # one decision per scope: each compared the new fact with its memory
    assert out.statuses["SUCCEEDED"] == count and out.memories == 2 * count, out.summary()
    assert out.duplicate_memories == 0 and not out.history_mismatches
    assert cross_scope_overlaps > 0  # reconciles of different scopes held their locks at the same time
    engine.dispose()
