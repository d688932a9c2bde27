"""The LLM through litellm: any provider it supports, or an OpenAI-compatible server."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field

from engram.llm.chat import ChatLLM
from engram.llm.litellm_errors import classify_litellm_error


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

    def __init__(self, config: LiteLLMConfig) -> None:
        self.config = config

    def complete(self, messages: list[dict[str, str]]) -> str:
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
        try:
            response = litellm.completion(**kwargs)
        except Exception as exc:  # mapped to Transient/Permanent, never swallowed
            raise classify_litellm_error(exc) from exc
        content = response.choices[0].message.content
        return content or ""
