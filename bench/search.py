"""Section 2: search latency at 10k and 100k memories over 1,000 scopes, query embedding included.

Memories are loaded in bulk (not through the LLM pipeline): embedded once, in batches, with the
shared all-MiniLM-L6-v2 weights (cached on disk between runs), then written with each system's own
store adapter: ``LanceVectorStore.upsert`` for engram, mem0's ``vector_store.insert`` (Qdrant local,
BM25 sparse vectors included) with the payload mem0 itself writes. Searches are sequential, after
warm-ups, one random scope each:

- engram API: ``POST /v3/memories/search/`` through a real API process (client-side time);
- engram in-process: what that route runs (``engram.memories.search``: embed + Lance search, read
  through pylance as in the API);
- mem0: ``Memory.search`` (hybrid: spaCy lemmas + entities, dense + BM25 via its store).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE_DIR, console, progress, stats_ms
from bench.mem0_setup import memory as mem0_memory
from bench.stack import EngramStack, StandIn
from bench.workload import Corpus, corpus
from engram.vectorstores.lance_upkeep import version_count

EMBED_BATCH = 512
LOAD_BATCH = 5000
WARM_UPS = 20
TOP_K = 10
NAMESPACE = uuid.UUID("6f1d2c1e-3b0a-4d5e-9f61-2a7b8c9d0e1f")


def embed_cached(texts: list[str], label: str) -> np.ndarray:
    """Normalised vectors for ``texts``, from the disk cache when this exact list was embedded before."""
    from engram.embedding.onnx import OnnxConfig, OnnxEmbedder

    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"minilm-{len(texts)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    embedder = OnnxEmbedder(OnnxConfig(batch_size=EMBED_BATCH, threads=os.cpu_count() or 1))  # bulk, idle machine
    out = np.zeros((len(texts), 384), dtype="float32")
    with progress() as bar:
        task = bar.add_task(f"embed {label}", total=len(texts))
        for start in range(0, len(texts), EMBED_BATCH * 4):
            chunk = texts[start : start + EMBED_BATCH * 4]
            out[start : start + len(chunk)] = np.asarray(embedder.embed(chunk), dtype="float32")
            bar.advance(task, len(chunk))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def load_engram(store: Any, project_id: str, data: Corpus, vectors: np.ndarray, start: int, stop: int) -> float:
    from engram.ids import content_hash
    from engram.ports import MemoryRecord
    from engram.scope import Scope

    began = time.perf_counter()
    now = datetime.now(UTC)
    with progress() as bar:
        task = bar.add_task(f"load engram {start}-{stop}", total=stop - start)
        for lo in range(start, stop, LOAD_BATCH):
            hi = min(stop, lo + LOAD_BATCH)
            records = [
                MemoryRecord(
                    id=str(uuid.uuid5(NAMESPACE, str(i))),
                    memory=data.texts[i],
                    hash=content_hash(data.texts[i]),
                    scope=Scope(project_id, user_id=data.scopes[i]),
                    vector=vectors[i].tolist(),
                    created_at=now,
                    updated_at=now,
                )
                for i in range(lo, hi)
            ]
            store.upsert(records)
            bar.advance(task, hi - lo)
    store.optimize()  # what the store's own periodic optimize leaves behind: compacted, text index folded in
    return time.perf_counter() - began


def load_mem0(m: Any, data: Corpus, vectors: np.ndarray, start: int, stop: int) -> float:
    """mem0's own payload (as ``_create_memory`` writes it), without per-row spaCy lemmas (BM25 then
    encodes ``data``; lemmatising 100k rows one by one would take longer than the whole benchmark)."""
    began = time.perf_counter()
    now = datetime.now(UTC).isoformat()
    with progress() as bar:
        task = bar.add_task(f"load mem0   {start}-{stop}", total=stop - start)
        for lo in range(start, stop, LOAD_BATCH):
            hi = min(stop, lo + LOAD_BATCH)
            payloads = [
                {
                    "data": data.texts[i],
                    "hash": hashlib.md5(data.texts[i].encode()).hexdigest(),
                    "user_id": data.scopes[i],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(lo, hi)
            ]
            ids = [str(uuid.uuid5(NAMESPACE, str(i))) for i in range(lo, hi)]
            m.vector_store.insert(vectors=vectors[lo:hi].tolist(), ids=ids, payloads=payloads)
            bar.advance(task, hi - lo)
    return time.perf_counter() - began


def timed(label: str, queries: list[tuple[str, str]], call: Any) -> dict[str, Any]:
    for query, scope in queries[:WARM_UPS]:
        call(query, scope)
    seconds, empty = [], 0
    with progress() as bar:
        task = bar.add_task(label, total=len(queries))
        for query, scope in queries:
            start = time.perf_counter()
            found = call(query, scope)
            seconds.append(time.perf_counter() - start)
            empty += not found
            bar.advance(task)
    return {"latency_ms": stats_ms(seconds), "empty_results": empty}


def run(
    sizes: list[int],
    scopes: int,
    queries: int,
    workdir: Path,
    redis_url: str,
    mem0_queries_above_10k: int = 60,
    ingest_after: int = 0,
) -> dict[str, Any]:
    """``ingest_after``: that many conversations go through the pipeline (threaded workers, LLM stand-in at
    0 ms) into the largest store once it is measured, and engram's API search is timed again after: ingest
    at scale, and search with the table as the writes' own upkeep leaves it rather than freshly optimized."""
    from config.container import Container
    from engram import memories
    from engram.filters import eq

    data = corpus(max(sizes), scopes, queries)
    vectors = embed_cached(data.texts, f"{max(sizes)} memories")
    stand_in = StandIn(workdir, 0.0) if ingest_after else None
    stack = EngramStack(workdir / "engram", redis_url, llm_base_url=stand_in.base_url if stand_in else None)
    m, status = mem0_memory(workdir / "mem0", in_memory=True)
    results: dict[str, Any] = {
        "scopes": scopes,
        "queries": queries,
        "top_k": TOP_K,
        "mem0_hybrid": status,
        "mem0_queries_above_10k": mem0_queries_above_10k,
        "sizes": {},
    }
    try:
        stack.bootstrap()
        c = Container(stack.settings())
        c.serve_searches()  # as the API answers searches: embedder on every core, store through pylance
        stack.start_api()
        results["engram_search_mode"] = getattr(c.settings.vector_store, "search_mode", "vector")

        def api(query: str, scope: str) -> list[Any]:
            body = {"query": query, "filters": {"user_id": scope}, "top_k": TOP_K}
            response = stack.client.post("/v3/memories/search/", json=body)
            response.raise_for_status()
            return response.json()["results"]  # type: ignore[no-any-return]

        def in_process(query: str, scope: str) -> list[Any]:
            return memories.search(c, stack.project_id, eq("user_id", scope), query, limit=TOP_K, threshold=None)

        def mem0(query: str, scope: str) -> list[Any]:
            return m.search(query, filters={"user_id": scope}, top_k=TOP_K)["results"]  # type: ignore[no-any-return]

        loaded = 0
        for size in sorted(sizes):
            load_s = load_engram(c.vector_store, stack.project_id, data, vectors, loaded, size)
            mem0_s = load_mem0(m, data, vectors, loaded, size)
            loaded = size
            row: dict[str, Any] = {
                "engram_load_seconds": round(load_s, 1),
                "mem0_load_seconds": round(mem0_s, 1),
                "engram_api": timed(f"search {size:>6} engram API", data.queries, api),
                "engram_in_process": timed(f"search {size:>6} engram store", data.queries, in_process),
                # Qdrant local mode filters in Python (about 2 s a query at 100k here): fewer queries keep the
                # run inside its time budget; the p95 of 60 samples is still a fair estimate at that scale.
                "mem0": timed(
                    f"search {size:>6} mem0",
                    data.queries[: mem0_queries_above_10k if size > 10_000 else len(data.queries)],
                    mem0,
                ),
            }
            results["sizes"][str(size)] = row
            console.print(
                f"  {size} memories: engram API p50 {row['engram_api']['latency_ms']['p50']} ms "
                f"p95 {row['engram_api']['latency_ms']['p95']} ms; in-process p95 "
                f"{row['engram_in_process']['latency_ms']['p95']} ms; mem0 p50 {row['mem0']['latency_ms']['p50']} ms "
                f"p95 {row['mem0']['latency_ms']['p95']} ms"
            )
        if stand_in is not None:
            results["at_scale"] = _ingest_then_search(stack, stand_in, ingest_after, max(sizes), data, api)
        c.close()
    finally:
        stack.stop()
        if stand_in is not None:
            stand_in.stop()
    return results


def _ingest_then_search(
    stack: EngramStack, stand_in: StandIn, n: int, stored: int, data: Corpus, api: Any
) -> dict[str, Any]:
    from bench import ingest
    from bench.stack import WORKER_CONFIGS
    from bench.workload import conversations

    stack.start_workers(WORKER_CONFIGS["threads"])
    ingested = ingest.measure(stack, conversations(n), stand_in, "threads")
    searched = timed(f"search {stored:>6} + {n} conversations, engram API", data.queries, api)
    import lance

    table = stack.workdir / "vectors" / "memories.lance"
    shape = {"fragments": len(lance.dataset(str(table)).get_fragments()), "versions": version_count(table)}
    console.print(
        f"  ingest into {stored:,} memories: {ingested['conversations_per_second']} conv/s; search after: p50 "
        f"{searched['latency_ms']['p50']} ms p95 {searched['latency_ms']['p95']} ms ({shape})"
    )
    return {"memories_before": stored, "ingest": ingested, "search_after": searched, "table": shape}
