"""End to end through litellm: a real worker whose LLM is an OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm_stub import LLMStub, litellm_env
from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStub]:
    with LLMStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, llm: LLMStub) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("e2e-litellm"),
        redis_url,
        **litellm_env(llm, timeout_seconds=5),
        ENGRAM_PIPELINE__MAX_ATTEMPTS_PER_STAGE="3",
    )
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def healthy_llm(llm: LLMStub) -> None:
    llm.reset()


def test_facts_and_decisions_come_from_the_llm(stack: Stack, llm: LLMStub) -> None:
    job = stack.wait_job(stack.add({"messages": "I grow tomatoes on my balcony.", "user_id": "lit"}))
    assert job["status"] == "SUCCEEDED", job
    assert [(r["event"], r["memory"]) for r in job["results"]] == [("ADD", "Grows tomatoes on their balcony")]
    prompts = [r["messages"][-1]["content"] for r in llm.requests]
    # The user's first conversation: nothing to reconcile against, so the update decision is not asked.
    assert len(prompts) == 1 and prompts[0].startswith("Conversation:")
    llm.reset()
    job = stack.wait_job(stack.add({"messages": "I grow basil on my balcony too.", "user_id": "lit"}))
    assert job["status"] == "SUCCEEDED", job
    prompts = [r["messages"][-1]["content"] for r in llm.requests]
    assert prompts[0].startswith("Conversation:") and "NEW FACTS:" in prompts[1]
    assert "Grows tomatoes on their balcony" in prompts[1]  # the stored memory is shown to the decision


def test_rate_limited_call_is_retried_after_retry_after(stack: Stack, llm: LLMStub) -> None:
    llm.script(["rate_limit:1"])
    job = stack.wait_job(stack.add({"messages": "I ride a unicycle.", "user_id": "lit-429"}))
    assert job["status"] == "SUCCEEDED", job
    assert [r["memory"] for r in job["results"]] == ["Rides a unicycle"]
    assert [c.mode for c in llm.calls][:2] == ["rate_limit", "ok"]


def test_malformed_twice_fails_the_job_and_stores_nothing(stack: Stack, llm: LLMStub) -> None:
    stack.wait_job(stack.add({"messages": "I keep bees.", "user_id": "lit-bad"}))
    before = stack.memories(user_id="lit-bad")
    llm.reset()
    llm.set_mode("malformed")
    job = stack.wait_job(stack.add({"messages": "I keep goats.", "user_id": "lit-bad"}))
    assert job["status"] == "FAILED"
    assert "malformed" in job["error"] and job["stage"] == "queued"
    assert len(llm.requests) == 2  # the answer and one repair attempt, no more
    assert stack.memories(user_id="lit-bad") == before
