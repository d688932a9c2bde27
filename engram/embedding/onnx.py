"""``OnnxEmbedder``: a sentence-transformers model (all-MiniLM-L6-v2 by default) run by ONNX Runtime.

The same weights and the same vectors as the ``sentence_transformers`` provider (mean pooling over the
attention mask, L2-normalised, truncated at the model's ``max_seq_length``; tests/test_onnx_embedder.py
checks them against sentence-transformers), at about a third of the time for a short query and a
quarter of the memory: a process never imports torch or transformers. The ONNX graph is exported once
per machine from the model directory, in a child process (``engram.embedding.onnx_export``), into
``cache_dir``; processes that start together wait for the first one's export.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from engram.batching import BatchingRunner
from engram.embedding.local import DEFAULT_MODEL, resolve_model_path

EXPORT_TIMEOUT_SECONDS = 600


class OnnxConfig(BaseModel):
    model: str = DEFAULT_MODEL
    dimensions: int = Field(384, gt=0)
    batch_size: int = Field(64, gt=0, description="Texts per forward pass")
    cache_dir: Path = Field(Path.home() / ".cache" / "engram" / "onnx", description="Where exported graphs are kept")
    threads: int = Field(1, gt=0, description="ONNX Runtime intra-op threads (one per process suits prefork)")


class OnnxEmbedder:
    config_model = OnnxConfig

    def __init__(self, config: OnnxConfig) -> None:
        self.config = config
        self.dimensions = config.dimensions
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._runner: BatchingRunner[str, list[float]] = BatchingRunner(self._encode, name="engram-embedder")

    def warm_up(self) -> None:
        self.embed(["warm up"])

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._runner.run(texts)

    # -- loading -----------------------------------------------------------------------------------
    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._open()
        return self._session, self._tokenizer

    def _open(self) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        model_dir = Path(resolve_model_path(self.config.model))
        max_length = _check_model(model_dir)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        # With several threads, ONNX Runtime's idle ones spin for more work by default, on cores the store's
        # reads want next (bench/ search at 100k memories through the API, two threads: p95 28-31 spinning,
        # 19.6 not; one thread 20.2-20.5).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(self._graph(model_dir)), options, providers=["CPUExecutionProvider"]
        )
        width = session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != self.dimensions:
            raise ValueError(f"embedder {self.config.model!r} gives {width}-d vectors, settings say {self.dimensions}")
        self._tokenizer, self._session = tokenizer, session

    def _graph(self, model_dir: Path) -> Path:
        """The exported graph for these weights, exporting it first if no process has yet."""
        weights = next((model_dir / name for name in ("model.safetensors", "pytorch_model.bin")
                        if (model_dir / name).exists()), None)
        if weights is None:
            raise ValueError(f"no model weights in {model_dir}")
        stat = weights.stat()
        key = hashlib.sha256(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        self.config.cache_dir.mkdir(parents=True, exist_ok=True)
        graph = self.config.cache_dir / f"{model_dir.name}-{key}.onnx"
        if graph.exists():
            return graph
        with open(self.config.cache_dir / ".export.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one exporter; the others find its file when they get the lock
            if not graph.exists():
                done = subprocess.run(
                    [sys.executable, "-m", "engram.embedding.onnx_export", str(model_dir), str(graph)],
                    capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS,
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                )
                if done.returncode != 0 or not graph.exists():
                    raise RuntimeError(f"exporting {model_dir} to ONNX failed:\n{done.stderr[-2000:]}")
        return graph

    # -- inference ---------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> list[list[float]]:
        session, tokenizer = self._load()
        out: list[list[float]] = []
        for start in range(0, len(texts), self.config.batch_size):
            encoded = tokenizer.encode_batch(texts[start : start + self.config.batch_size])
            ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out += pooled.astype("float32").tolist()
        return out


def _check_model(model_dir: Path) -> int:
    """The model's max_seq_length; refuses what this runner does not reproduce (only mean pooling + normalise)."""
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").exists() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    pooling_file = model_dir / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_file.read_text()) if pooling_file.exists() else {}
    if kinds != ["Transformer", "Pooling", "Normalize"] or not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(
            f"{model_dir}: the onnx embedder runs mean-pooled, normalised sentence-transformers models only "
            f"(found modules {kinds}); use ENGRAM_EMBEDDER__PROVIDER=sentence_transformers for this one"
        )
    config = model_dir / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", 256)) if config.exists() else 256
