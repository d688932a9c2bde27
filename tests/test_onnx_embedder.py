"""The default embedder: all-MiniLM-L6-v2 on ONNX Runtime gives the vectors sentence-transformers gives."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from engram.embedding.local import SentenceTransformerConfig, SentenceTransformerEmbedder, resolve_model_path
from engram.embedding.onnx import OnnxConfig, OnnxEmbedder

TEXTS = [
    "I live in Lisbon and I love hiking.",
    "",
    "Ünïcödé ✓ 東京 — émigré café",
    "word " * 400,  # past max_seq_length: truncated the same way
    "Where does the user live now?",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


def test_same_vectors_as_sentence_transformers(cache_dir: Path) -> None:
    onnx = np.asarray(OnnxEmbedder(OnnxConfig(cache_dir=cache_dir)).embed(TEXTS))
    torch = np.asarray(SentenceTransformerEmbedder(SentenceTransformerConfig()).embed(TEXTS))
    assert onnx.shape == torch.shape == (len(TEXTS), 384)
    assert np.abs(onnx - torch).max() < 1e-4
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)


def test_the_export_is_made_once_and_reused(cache_dir: Path) -> None:
    OnnxEmbedder(OnnxConfig(cache_dir=cache_dir)).embed(["warm"])
    graphs = list(cache_dir.glob("*.onnx"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    again = OnnxEmbedder(OnnxConfig(cache_dir=cache_dir))
    assert len(again.embed(["another process, the same graph"])[0]) == 384
    assert [g.stat().st_mtime_ns for g in cache_dir.glob("*.onnx")] == [stamp]


def test_calls_from_many_threads_each_get_their_own_vectors(cache_dir: Path) -> None:
    embedder = OnnxEmbedder(OnnxConfig(cache_dir=cache_dir))
    alone = {text: embedder.embed([text])[0] for text in TEXTS}
    together: dict[int, list[list[float]]] = {}

    def call(i: int) -> None:
        together[i] = embedder.embed([TEXTS[i % len(TEXTS)], TEXTS[(i + 1) % len(TEXTS)]])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, vectors in together.items():
        expected = [alone[TEXTS[i % len(TEXTS)]], alone[TEXTS[(i + 1) % len(TEXTS)]]]
        assert np.abs(np.asarray(vectors) - np.asarray(expected)).max() < 1e-4
    assert len(together) == 16


def test_a_model_it_cannot_reproduce_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    model = tmp_path / "cls-pooled"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), model)
    pooling = model / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "pooling_mode_mean_tokens": False,
                                   "pooling_mode_cls_token": True}))
    with pytest.raises(ValueError, match="mean-pooled"):
        OnnxEmbedder(OnnxConfig(model=str(model), cache_dir=cache_dir)).embed(["x"])
