"""The shared LLM rate limit: token buckets in a real Redis, shared by every limiter on one key."""

from __future__ import annotations

import uuid

import pytest
import redis

from engram.errors import RateLimited
from engram.llm.litellm_llm import LiteLLM, LiteLLMConfig
from engram.llm.ratelimit import RateLimiter, estimate_tokens


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_requests_per_minute_are_shared(client: redis.Redis) -> None:
    key = f"engram-test:rl:{uuid.uuid4().hex}"
    first, second = RateLimiter(client, key, requests_per_minute=3), RateLimiter(client, key, requests_per_minute=3)
    assert [first.try_acquire(1), second.try_acquire(1), first.try_acquire(1)] == [0.0, 0.0, 0.0]
    wait = second.try_acquire(1)
    assert 0 < wait <= 20.0  # one request refills every 20 s at 3/min


def test_tokens_per_minute(client: redis.Redis) -> None:
    limiter = RateLimiter(client, f"engram-test:rl:{uuid.uuid4().hex}", tokens_per_minute=1000)
    assert limiter.try_acquire(600) == 0.0
    wait = limiter.try_acquire(600)
    assert wait > 0  # only ~400 left; nothing was taken by the refusal
    assert limiter.try_acquire(300) == 0.0


def test_unlimited_never_touches_redis() -> None:
    limiter = RateLimiter(redis.Redis.from_url("redis://127.0.0.1:1/0"), "k")
    assert limiter.try_acquire(10**6) == 0.0


def test_a_long_wait_hands_the_slot_back(client: redis.Redis) -> None:
    key = f"engram-test:rl:{uuid.uuid4().hex}"
    llm = LiteLLM(LiteLLMConfig(model="openai/x", api_base="http://127.0.0.1:9"),
                  limiter=RateLimiter(client, key, requests_per_minute=1))
    assert llm.limiter is not None and llm.limiter.try_acquire(1) == 0.0  # the minute's only request
    with pytest.raises(RateLimited) as raised:
        llm.complete([{"role": "user", "content": "hi"}])
    assert raised.value.retry_after_seconds is not None and raised.value.retry_after_seconds > 2


def test_estimate_counts_prompt_and_answer_budget() -> None:
    assert estimate_tokens([{"role": "user", "content": "x" * 400}], max_tokens=50) == 150
