"""The LLM through litellm: any provider it supports, or an OpenAI-compatible server."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from pydantic import BaseModel, Field

from engram import metrics
from engram.errors import RateLimited
from engram.llm.chat import ChatLLM
from engram.llm.litellm_errors import classify_litellm_error
from engram.llm.ratelimit import RateLimiter, estimate_tokens

# Waits for the shared rate limit up to this long inside the call; past it the task retries later.
INLINE_RATE_LIMIT_WAIT_SECONDS = 2.0
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


def import_litellm() -> Any:
    # Without this, importing litellm tries to download its model cost map from the internet.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    # litellm turns max_retries=0 back into its default of 2 for OpenAI clients; retries belong to
    # the task queue (backoff, Retry-After, attempt cap), never to a blocked worker slot.
    os.environ.setdefault("DEFAULT_MAX_RETRIES", "0")
    import litellm

    litellm.telemetry = False
    litellm.DEFAULT_MAX_RETRIES = 0  # type: ignore[misc]
    # litellm's loggers follow the root level, so under a worker's --loglevel=INFO every call wrote two
    # INFO lines, which Celery's stderr redirect then logged once more. LITELLM_LOG still sets it.
    level = logging.getLevelName(os.environ.get("LITELLM_LOG", "WARNING").upper())
    for name in LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(level if isinstance(level, int) else logging.WARNING)
    return litellm


class LiteLLMConfig(BaseModel):
    model: str
    api_base: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeout_seconds: float = Field(60.0, gt=0)
    temperature: float = 0.0
    max_tokens: int = Field(2000, gt=0)
    json_mode: bool = Field(True, description="Ask for response_format=json_object")


class LiteLLM(ChatLLM):
    config_model = LiteLLMConfig

    def __init__(self, config: LiteLLMConfig, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.limiter = limiter

    def warm_up(self) -> None:
        """Import litellm and its OpenAI client now (seconds of CPU), not inside the first job."""
        import_litellm()
        import openai  # noqa: F401 - what litellm's OpenAI-compatible providers call through

    def complete(self, messages: list[dict[str, str]]) -> str:
        self._wait_for_rate_limit(messages)
        litellm = import_litellm()
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "timeout": self.config.timeout_seconds,
            # Retries belong to the task queue (backoff, Retry-After, attempt cap), not to a blocked slot.
            "num_retries": 0,
            "max_retries": 0,
        }
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if self.config.api_key:
            kwargs["api_key"] = self.config.api_key
        if self.config.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        started = time.perf_counter()
        try:
            response = litellm.completion(**kwargs)
        except Exception as exc:  # mapped to Transient/Permanent, never swallowed
            metrics.LLM_CALLS.labels(self.config.model, type(exc).__name__).inc()
            raise classify_litellm_error(exc) from exc
        metrics.LLM_SECONDS.labels(self.config.model).observe(time.perf_counter() - started)
        metrics.LLM_CALLS.labels(self.config.model, "ok").inc()
        usage = getattr(response, "usage", None)
        if usage is not None:
            metrics.LLM_TOKENS.labels(self.config.model, "prompt").inc(getattr(usage, "prompt_tokens", 0) or 0)
            metrics.LLM_TOKENS.labels(self.config.model, "completion").inc(getattr(usage, "completion_tokens", 0) or 0)
        content = response.choices[0].message.content
        return content or ""

    def _wait_for_rate_limit(self, messages: list[dict[str, str]]) -> None:
        """Short waits happen here; a long one hands the slot back (the task retries after it)."""
        if self.limiter is None:
            return
        wanted = estimate_tokens(messages, self.config.max_tokens)
        deadline = time.monotonic() + INLINE_RATE_LIMIT_WAIT_SECONDS
        while (wait := self.limiter.try_acquire(wanted)) > 0:
            if time.monotonic() + wait > deadline:
                metrics.LLM_RATE_LIMITED.labels(self.config.model).inc()
                raise RateLimited(f"LLM rate limit reached for {self.config.model}", retry_after_seconds=wait)
            time.sleep(wait)
