"""LoCoMo retrieval: plain cosine vs hybrid (BM25 + vector, relative score fusion) on the embedded store.

    .venv/bin/python bench/locomo_retrieval.py            # all 5 dev conversations, ~2-4 min on 2 cores
    .venv/bin/python bench/locomo_retrieval.py --limit 200 --alphas 0.5

Recipe (/work/shared/bench/README.md): one memory per dialog turn (infer=false), text = memory_text,
scope user_id = sample_id, all conversations in one store; per scorable question one search in the
same scope, top_k = 10, no threshold; hit@k = an evidence turn (by dia_id) among the top k.
Embedder all-MiniLM-L6-v2 (normalised, cosine) for every configuration; the store is
``LanceVectorStore`` used directly, so latency is the store's search only (the query embedding,
the same for every configuration, is reported separately).

Writes bench/results/locomo_retrieval.{json,md,png}. Data: LoCoMo (Maharana et al., ACL 2024),
CC BY-NC 4.0, internal benchmarking only; it is read from --data and never copied here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ENGRAM_TORCH_THREADS", str(os.cpu_count() or 1))  # one process here: use every core

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from engram.embedding.onnx import OnnxConfig, OnnxEmbedder  # noqa: E402
from engram.filters import eq  # noqa: E402
from engram.ids import content_hash  # noqa: E402
from engram.ports import MemoryRecord, SearchMode  # noqa: E402
from engram.scope import Scope  # noqa: E402
from engram.vectorstores.lance import LanceConfig, LanceVectorStore  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("ENGRAM_LOCOMO_DIR", "/work/shared/bench"))
RESULTS = ROOT / "bench" / "results"
PROJECT = "bench"
TOP_K = 10
KS = (1, 5, 10)
WARM_UPS = 20
CATEGORY_ORDER = ("single-hop", "multi-hop", "temporal", "open-domain")
NAMESPACE = uuid.UUID("0b6f3a52-8d0c-4f63-9a3e-4c1f1c0e7a11")
console = Console(stderr=True)


def load(data: Path, limit: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    turns = [json.loads(line) for line in (data / "locomo_dev_turns.jsonl").open()]
    questions = [q for q in map(json.loads, (data / "locomo_dev_qa.jsonl").open()) if q.get("scorable")]
    return turns, questions[:limit] if limit else questions


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def ingest(store: LanceVectorStore, embedder: OnnxEmbedder, turns: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    base = datetime(2024, 1, 1, tzinfo=UTC)
    with progress() as bar:
        task = bar.add_task("embed + store turns", total=len(turns))
        for offset in range(0, len(turns), 256):
            chunk = turns[offset : offset + 256]
            vectors = embedder.embed([t["memory_text"] for t in chunk])
            records = []
            for i, (turn, vector) in enumerate(zip(chunk, vectors, strict=True)):
                at = base + timedelta(seconds=offset + i)
                records.append(
                    MemoryRecord(
                        id=str(uuid.uuid5(NAMESPACE, f"{turn['sample_id']}:{turn['dia_id']}")),
                        memory=turn["memory_text"],
                        hash=content_hash(turn["memory_text"]),
                        scope=Scope(PROJECT, user_id=turn["sample_id"]),
                        vector=vector,
                        created_at=at,
                        updated_at=at,
                        metadata={
                            k: turn[k]
                            for k in ("sample_id", "dia_id", "session", "session_date_time", "speaker", "turn_index")
                        },
                    )
                )
            store.upsert(records)
            bar.advance(task, len(chunk))
    store.optimize()  # fold every row into the full-text index, as the store does on its own over time
    return time.perf_counter() - start


def run_config(
    store: LanceVectorStore,
    questions: list[dict[str, Any]],
    vectors: list[list[float]],
    mode: SearchMode,
    alpha: float | None,
    bar: Progress,
) -> dict[str, Any]:
    def search(i: int) -> list[MemoryRecord]:
        q = questions[i]
        return store.search(
            vectors[i],
            project_id=PROJECT,
            where=eq("user_id", q["sample_id"]),
            limit=TOP_K,
            query_text=q["question"],
            mode=mode,
            alpha=alpha,
        )

    for i in range(min(WARM_UPS, len(questions))):
        search(i)
    hits: dict[str, list[list[int]]] = defaultdict(list)
    latencies = []
    label = mode if alpha is None else f"{mode} alpha={alpha}"
    task = bar.add_task(f"search: {label}", total=len(questions))
    for i, q in enumerate(questions):
        start = time.perf_counter()
        found = search(i)
        latencies.append(time.perf_counter() - start)
        evidence = set(q["evidence"])
        row = [int(any(r.metadata.get("dia_id") in evidence for r in found[:k])) for k in KS]
        hits["overall"].append(row)
        hits[q["category_name"]].append(row)
        bar.advance(task)
    return {
        "mode": mode,
        "alpha": alpha,
        "hit": {group: _rates(rows) for group, rows in hits.items()},
        "questions": {group: len(rows) for group, rows in hits.items()},
        "latency_ms": _percentiles(latencies),
    }


def _rates(rows: list[list[int]]) -> dict[str, float]:
    return {f"@{k}": round(sum(r[j] for r in rows) / len(rows), 4) for j, k in enumerate(KS)}


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    pick = lambda p: ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))]  # noqa: E731
    return {"p50": round(pick(0.50), 2), "p95": round(pick(0.95), 2), "mean": round(statistics.fmean(ms), 2)}


def name_of(run: dict[str, Any]) -> str:
    if run["mode"] == "vector":
        return "vector (cosine)"
    return "keyword only (alpha=0)" if run["alpha"] == 0 else f"hybrid alpha={run['alpha']}"


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        "# LoCoMo retrieval: vector vs hybrid (embedded store)",
        "",
        f"Command: `{result['command']}`  ",
        f"{result['questions']} scorable questions over {result['conversations']} conversations "
        f"({result['turns']} turns, one memory each), top_k={TOP_K}, no threshold, all-MiniLM-L6-v2.  ",
        f"Machine: {result['machine']}; {result['started_at']}. Ingest (embed + store): {result['ingest_seconds']} s; "
        f"query embedding p50 {result['embed_query_ms']['p50']} ms (same for every row, not in the latencies).",
        "",
        "| configuration | hit@1 | hit@5 | hit@10 | search p50 ms | search p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        h, lat = run["hit"]["overall"], run["latency_ms"]
        lines.append(
            f"| {name_of(run)} | {h['@1']:.3f} | {h['@5']:.3f} | {h['@10']:.3f} | {lat['p50']} | {lat['p95']} |"
        )
    categories = [c for c in CATEGORY_ORDER if c in runs[0]["hit"]]
    lines += ["", "hit@5 / hit@10 by category (questions):", ""]
    lines.append("| configuration | " + " | ".join(f"{c} ({runs[0]['questions'][c]})" for c in categories) + " |")
    lines.append("|---|" + "---|" * len(categories))
    for run in runs:
        cells = [f"{run['hit'][c]['@5']:.3f} / {run['hit'][c]['@10']:.3f}" for c in categories]
        lines.append(f"| {name_of(run)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Decision: {result['decision']}",
        "",
        "Caveats: alpha is picked on these dev conversations (no held-out split here; 0.3-0.5 is a plateau). "
        "Memories are raw dialog turns (infer=false); LLM-extracted facts share fewer words with questions, "
        "which may narrow the keyword side's lead.",
        "",
        "Data: LoCoMo (Maharana et al., ACL 2024), CC BY-NC 4.0, internal benchmarking only.",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [run["hit"]["overall"][f"@{k}"] for k in KS]
        left.bar([x + i * width for x in range(len(KS))], values, width, label=name_of(run))
    left.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(KS))], [f"hit@{k}" for k in KS])
    left.set_ylim(0, 1)
    left.set_title(f"LoCoMo retrieval, {result['questions']} questions")
    left.legend(fontsize=8, loc="upper left")
    right.bar([name_of(r) for r in runs], [r["latency_ms"]["p50"] for r in runs], color="grey", label="p50")
    right.scatter([name_of(r) for r in runs], [r["latency_ms"]["p95"] for r in runs], color="black", label="p95")
    right.set_ylabel("store search latency, ms")
    right.tick_params(axis="x", labelrotation=30, labelsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def decide(runs: list[dict[str, Any]]) -> tuple[SearchMode, float | None, str]:
    """Hybrid becomes the default only if its best alpha beats cosine on hit@5 and hit@10 overall
    without giving up more than a point of hit@1."""
    vector = next(r for r in runs if r["mode"] == "vector")["hit"]["overall"]
    hybrids = [r for r in runs if r["mode"] == "hybrid" and 0 < r["alpha"] < 1]
    best = max(hybrids, key=lambda r: (r["hit"]["overall"]["@5"] + r["hit"]["overall"]["@10"], r["alpha"]))
    h = best["hit"]["overall"]
    if h["@5"] > vector["@5"] and h["@10"] > vector["@10"] and h["@1"] >= vector["@1"] - 0.01:
        why = (
            f"hybrid alpha={best['alpha']} beats cosine: hit@1 {h['@1']:.3f} vs {vector['@1']:.3f}, "
            f"hit@5 {h['@5']:.3f} vs {vector['@5']:.3f}, hit@10 {h['@10']:.3f} vs {vector['@10']:.3f}"
        )
        return "hybrid", best["alpha"], why
    return "vector", None, f"no hybrid alpha beat cosine on hit@5 and hit@10 (best: alpha={best['alpha']}, {h})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with locomo_dev_*.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="at most this many questions (all by default)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.7, 0.5, 0.4, 0.3], help="hybrid vector weights")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = datetime.now(UTC).isoformat(timespec="seconds")
    turns, questions = load(args.data, args.limit)
    needed = {q["sample_id"] for q in questions}
    turns = [t for t in turns if t["sample_id"] in needed]
    embedder = OnnxEmbedder(OnnxConfig())
    embedder.warm_up()
    with tempfile.TemporaryDirectory(prefix="engram-locomo-") as tmp:
        store = LanceVectorStore(LanceConfig(path=Path(tmp)))
        ingest_seconds = ingest(store, embedder, turns)
        embed_times = []
        for q in questions[:50]:
            start = time.perf_counter()
            embedder.embed([q["question"]])
            embed_times.append(time.perf_counter() - start)
        vectors = embedder.embed([q["question"] for q in questions])
        configs: list[tuple[SearchMode, float | None]] = [("vector", None)] + [("hybrid", a) for a in args.alphas]
        configs.append(("hybrid", 0.0))
        with progress() as bar:
            runs = [run_config(store, questions, vectors, mode, alpha, bar) for mode, alpha in configs]
    mode, alpha, why = decide(runs)
    result = {
        "command": " ".join(["python bench/locomo_retrieval.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "conversations": len(needed),
        "turns": len(turns),
        "questions": len(questions),
        "top_k": TOP_K,
        "ingest_seconds": round(ingest_seconds, 1),
        "embed_query_ms": _percentiles(embed_times),
        "runs": runs,
        "decision": why,
        "chosen": {"search_mode": mode, "hybrid_alpha": alpha},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "locomo_retrieval.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "locomo_retrieval.md").write_text(markdown(result))
    plot(result, args.out / "locomo_retrieval.png")
    console.print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
