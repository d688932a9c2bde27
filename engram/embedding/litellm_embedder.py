"""Any embedding model litellm speaks to (OpenAI, Azure, Ollama, an OpenAI-compatible server...)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

from engram.llm.litellm_errors import classify_litellm_error


class LiteLLMEmbedderConfig(BaseModel):
    model: str
    dimensions: int = Field(gt=0)
    api_base: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeout_seconds: float = Field(30.0, gt=0)


class LiteLLMEmbedder:
    config_model = LiteLLMEmbedderConfig

    def __init__(self, config: LiteLLMEmbedderConfig) -> None:
        self.config = config
        self.dimensions = config.dimensions

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        from engram.llm.litellm_llm import import_litellm

        litellm = import_litellm()
        try:
            response = litellm.embedding(
                model=self.config.model,
                input=list(texts),
                api_base=self.config.api_base,
                api_key=self.config.api_key,
                timeout=self.config.timeout_seconds,
                num_retries=0,
                max_retries=0,
            )
        except Exception as exc:  # mapped to Transient/Permanent, never swallowed
            raise classify_litellm_error(exc) from exc
        vectors = [item["embedding"] for item in sorted(response.data, key=lambda d: d["index"])]
        return [_normalise(v) for v in vectors]


def _normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
