"""Section 4: LoCoMo retrieval (recipe in /work/shared/bench/README.md) for engram, mem0 OSS and the
plain-cosine floor, with hit@1/5/10 overall and per category and client-side search latency.

Reuses ``bench/locomo_retrieval.py`` (engram's vector-vs-hybrid study) for loading the data and for
writing the turns into ``LanceVectorStore`` exactly as the recipe says. engram is searched the way
its API does (``engram.memories.search``: embed the query, search the scope in the deployment's default
mode, hybrid or vector) and, for reference, the store in plain vector mode. mem0 gets
every turn stored as its own ``Memory.add(infer=False)`` stores it (see ``load_mem0``), and is searched with
``Memory.search(top_k=10, threshold=0)`` (hybrid when its NLP dependencies load; see mem0_setup).
Data: LoCoMo (Maharana et al., ACL 2024), CC BY-NC 4.0, internal benchmarking only; read, never copied.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import console, progress, stats_ms
from bench.locomo_retrieval import CATEGORY_ORDER, DEFAULT_DATA, KS, PROJECT, TOP_K, WARM_UPS, load
from bench.locomo_retrieval import ingest as load_engram
from bench.mem0_setup import memory as mem0_memory

META_KEYS = ("sample_id", "dia_id", "session", "session_date_time", "speaker", "turn_index")
Search = Callable[[int], list[Any]]  # question index -> dia_ids of the results, best first


def evaluate(label: str, questions: list[dict[str, Any]], search: Search) -> dict[str, Any]:
    for i in range(min(WARM_UPS, len(questions))):
        search(i)
    rows: dict[str, list[list[int]]] = defaultdict(list)
    seconds = []
    with progress() as bar:
        task = bar.add_task(f"LoCoMo {label}", total=len(questions))
        for i, q in enumerate(questions):
            start = time.perf_counter()
            found = search(i)
            seconds.append(time.perf_counter() - start)
            evidence = set(q["evidence"])
            row = [int(any(d in evidence for d in found[:k])) for k in KS]
            rows["overall"].append(row)
            rows[q["category_name"]].append(row)
            bar.advance(task)
    hit = {g: {f"@{k}": round(sum(r[j] for r in rs) / len(rs), 4) for j, k in enumerate(KS)} for g, rs in rows.items()}
    return {"hit": hit, "questions": {g: len(rs) for g, rs in rows.items()}, "latency_ms": stats_ms(seconds)}


def load_mem0(m: Any, turns: list[dict[str, Any]], vectors: np.ndarray) -> None:
    """What ``Memory.add(messages, infer=False, metadata=...)`` stores for each turn (one memory per
    message: mem0's payload with its spaCy lemmas for BM25), written in batches with precomputed vectors
    (the same all-MiniLM-L6-v2 vectors mem0's embedder makes) instead of 2,760 single calls."""
    import hashlib
    import uuid
    from datetime import UTC, datetime

    from mem0.utils.lemmatization import lemmatize_for_bm25

    now = datetime.now(UTC).isoformat()
    with progress() as bar:
        task = bar.add_task("LoCoMo mem0 load", total=len(turns))
        for lo in range(0, len(turns), 256):
            chunk = turns[lo : lo + 256]
            payloads = [
                {
                    **{k: t[k] for k in META_KEYS},
                    "user_id": t["sample_id"],
                    "role": "user",
                    "data": t["memory_text"],
                    "hash": hashlib.md5(t["memory_text"].encode()).hexdigest(),
                    "created_at": now,
                    "updated_at": now,
                    "text_lemmatized": lemmatize_for_bm25(t["memory_text"]),
                }
                for t in chunk
            ]
            m.vector_store.insert(
                vectors=vectors[lo : lo + len(chunk)].tolist(),
                ids=[str(uuid.uuid4()) for _ in chunk],
                payloads=payloads,
            )
            bar.advance(task, len(chunk))


def run(
    workdir: Path, limit_conversations: int | None = None, limit_questions: int | None = None, data: Path = DEFAULT_DATA
) -> dict[str, Any]:
    from config.container import Container
    from config.settings import Settings, VectorStoreSettings
    from engram import memories
    from engram.filters import eq

    turns, questions = load(data, None)
    if limit_conversations:
        keep = sorted({t["sample_id"] for t in turns})[:limit_conversations]
        turns = [t for t in turns if t["sample_id"] in keep]
        questions = [q for q in questions if q["sample_id"] in keep]
    questions = questions[:limit_questions] if limit_questions else questions
    c = Container(Settings(vector_store=VectorStoreSettings(path=workdir / "engram-vectors")))
    c.serve_searches()  # as the API answers searches: embedder on every core, store through pylance
    store, embedder = c.vector_store, c.embedder
    load_engram(store, embedder, turns)  # type: ignore[arg-type]
    results: dict[str, Any] = {
        "conversations": len({t["sample_id"] for t in turns}),
        "turns": len(turns),
        "questions": len(questions),
        "top_k": TOP_K,
        "systems": {},
    }

    # Floor: exact cosine over the scope's turns, same embedder.
    turn_vectors = np.asarray(embedder.embed([t["memory_text"] for t in turns]), dtype="float32")
    by_scope: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(turns):
        by_scope[t["sample_id"]].append(i)

    def floor(i: int) -> list[Any]:
        q = questions[i]
        rows = by_scope[q["sample_id"]]
        scores = turn_vectors[rows] @ np.asarray(embedder.embed([q["question"]])[0], dtype="float32")
        return [turns[rows[j]]["dia_id"] for j in np.argsort(-scores)[:TOP_K]]

    def engram_api_path(i: int) -> list[Any]:
        q = questions[i]
        found = memories.search(c, PROJECT, eq("user_id", q["sample_id"]), q["question"], limit=TOP_K, threshold=None)
        return [(r.metadata or {}).get("dia_id") for r in found]

    def engram_vector(i: int) -> list[Any]:
        q = questions[i]
        vector = embedder.embed([q["question"]])[0]
        where = eq("user_id", q["sample_id"])
        found = store.search(vector, project_id=PROJECT, where=where, limit=TOP_K, mode="vector")
        return [r.metadata.get("dia_id") for r in found]

    results["systems"]["cosine floor"] = evaluate("cosine floor", questions, floor)
    results["systems"]["engram"] = evaluate("engram (API search path)", questions, engram_api_path)
    results["systems"]["engram vector-only (store)"] = evaluate("engram vector-only", questions, engram_vector)
    results["engram_search_mode"] = getattr(c.settings.vector_store, "search_mode", "vector")
    c.close()

    m, status = mem0_memory(workdir / "mem0")
    results["mem0_hybrid"] = status
    began = time.perf_counter()
    load_mem0(m, turns, turn_vectors)
    results["mem0_ingest_seconds"] = round(time.perf_counter() - began, 1)

    def mem0_search(i: int) -> list[Any]:
        q = questions[i]
        found = m.search(q["question"], filters={"user_id": q["sample_id"]}, top_k=TOP_K, threshold=0)["results"]
        return [(r.get("metadata") or {}).get("dia_id") for r in found]

    results["systems"]["mem0"] = evaluate("mem0", questions, mem0_search)
    results["categories"] = [c for c in CATEGORY_ORDER if c in results["systems"]["engram"]["hit"]]
    for name, row in results["systems"].items():
        h = row["hit"]["overall"]
        console.print(
            f"  LoCoMo {name}: hit@1 {h['@1']:.3f} hit@5 {h['@5']:.3f} hit@10 {h['@10']:.3f}, "
            f"p50 {row['latency_ms']['p50']} ms p95 {row['latency_ms']['p95']} ms"
        )
    return results
