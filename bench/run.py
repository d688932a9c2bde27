"""One command for the whole comparison: ``.venv/bin/python -m bench.run`` (about 20-25 min on 2 cores),
``--quick`` for a ~3-minute smoke run with small sizes. Writes bench/results/ (results.json, results.md, PNGs).

Sections: ingest (1), search (2), ingest API under load (3), LoCoMo retrieval (4); peak RSS (5) is
sampled during the ingest runs. Everything runs on loopback with temp dirs and Redis database 11;
every process started here stops when its section ends (or when this process dies).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_REDIS_URL, OFFLINE_ENV, ROOT, console

SECTIONS = ("ingest", "search", "load", "locomo")
FULL: dict[str, Any] = {
    "conversations": 240,
    "latencies": [0.0, 300.0],
    "sizes": [10_000, 100_000],
    "scopes": 1000,
    "queries": 300,
    "mem0_queries_above_10k": 60,
    "load_seconds": 10,
    "locomo_conversations": None,
    "locomo_questions": None,
}
QUICK: dict[str, Any] = {
    "conversations": 12,
    "latencies": [300.0],
    "sizes": [2_000],
    "scopes": 100,
    "queries": 40,
    "mem0_queries_above_10k": 40,
    "load_seconds": 3,
    "locomo_conversations": 1,
    "locomo_questions": 60,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, ~3 minutes (smoke run)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--redis-url", default=os.environ.get("ENGRAM_BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for section 3")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn workers for section 3 (2 cores)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, stores) for inspection")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    os.environ.update(OFFLINE_ENV)
    # One process holds both systems' embedders for sections 2 and 4: torch's thread count is process-wide,
    # so both get the same (all cores, torch's own default for mem0).
    os.environ.setdefault("ENGRAM_TORCH_THREADS", str(os.cpu_count() or 1))
    started, began = datetime.now(UTC), time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "started_at": started.isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_at_start": [round(x, 2) for x in os.getloadavg()],
            "quick": args.quick,
            "sizes": sizes,
            "redis_url": args.redis_url,
        }
    }
    workdir = Path(tempfile.mkdtemp(prefix="engram-bench-"))
    console.print(f"[bold]engram vs mem0 OSS[/bold] ({'quick' if args.quick else 'full'}); work dir {workdir}")
    try:
        if "ingest" in args.only:
            from bench import ingest

            console.rule("1. ingest (and 5. peak RSS)")
            results["ingest"] = ingest.run(
                sizes["conversations"], sizes["latencies"], workdir / "ingest", args.redis_url
            )
        if "search" in args.only:
            from bench import search

            console.rule("2. search")
            results["search"] = search.run(
                sizes["sizes"],
                sizes["scopes"],
                sizes["queries"],
                workdir / "search",
                args.redis_url,
                sizes["mem0_queries_above_10k"],
                ingest_after=sizes["conversations"],
            )
        if "load" in args.only:
            from bench import load

            console.rule("3. ingest API under load")
            results["load"] = load.run(
                workdir / "load", args.redis_url, sizes["load_seconds"], args.connections, args.api_workers
            )
            if "skipped" in results["load"]:
                console.print(f"[red]section 3 skipped: {results['load']['skipped']}[/red]")
        if "locomo" in args.only:
            from bench import locomo

            console.rule("4. LoCoMo retrieval")
            results["locomo"] = locomo.run(workdir / "locomo", sizes["locomo_conversations"], sizes["locomo_questions"])
    finally:
        results["meta"]["seconds"] = round(time.perf_counter() - began, 1)
        results["meta"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    from bench import report

    results["notes"] = notes(results)
    report.write(results, args.out)
    console.print((args.out / "results.md").read_text())
    console.print(f"wrote {args.out}/results.json, results.md and plots in {results['meta']['seconds']} s")
    return 0


def notes(results: dict[str, Any]) -> list[str]:
    out = [
        "engram: API (uvicorn) + Celery workers + Redis (db 11) + SQLite + LanceDB, LLM via litellm to the stand-in. "
        "'prefork' = one worker on both queues (-Q llm,default -c 2 -Ofair); 'threads' = the Procfile's: two "
        "-Q llm -P threads -c 16 workers plus -Q default -c 1 prefork. Each conversation is two Celery tasks: "
        "extract with embed run inside it, reconcile with notify inside it (the default; "
        "ENGRAM_PIPELINE__SEPARATE_STAGE_TASKS=true makes it four).",
        "mem0: mem0ai 2.2.1 Memory, openai LLM provider at the stand-in, huggingface embedder with the same "
        "all-MiniLM-L6-v2 directory, Qdrant local mode, telemetry off, hybrid search on (see bench/mem0_setup.py).",
        "mem0 2.2.1 makes one LLM call per add (additive extraction); engram makes two (extract, then update "
        "decision), or one where the scope holds no memory yet (nothing to decide against). Both get answers "
        "derived from the input by the same heuristic extractor.",
        "Embedders: the same all-MiniLM-L6-v2 weights and vectors. engram runs them on ONNX Runtime (its default: "
        "one intra-op thread per worker process, one per core in the API and its in-process stand-in for query "
        "embeddings); mem0 on torch through sentence-transformers with "
        f"{os.environ.get('ENGRAM_TORCH_THREADS')} threads (torch's own default on this machine).",
    ]
    ingest = results.get("ingest") or []
    failed = [r for r in ingest if r["system"] == "mem0" and r["errors"]]
    if failed:
        example = (failed[0].get("error_examples") or ["?"])[0]
        out.append(
            f"mem0 with a thread pool: {sum(r['errors'] for r in failed)} of "
            f"{sum(r['conversations'] for r in failed)} adds failed ({example.splitlines()[0]}); its embedded "
            "Qdrant (local mode) is not safe for concurrent writes. Throughput targets count conversations ingested "
            "without error."
        )
    if results["meta"]["load_at_start"][0] > 1.0:
        out.append(
            f"The machine was busy at the start (load average {results['meta']['load_at_start']}): "
            "other work had just run or was still running (the one-minute average lags); absolute numbers are noisy."
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
