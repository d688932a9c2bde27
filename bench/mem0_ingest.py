"""mem0 OSS ingest in its own process: ``Memory.add`` sequentially, or from a thread pool.

Sequential is what mem0's REST server does for one client (one ``add`` per request); the pool is the
most a single mem0 process gets from threads. Every conversation is "submitted" at t0, as engram's
batch is, so latency = completion - t0; the time inside each ``add`` call is reported too.
Prints one line per finished conversation (for the parent's progress bar) and writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import json_default, stats_ms
from bench.mem0_setup import memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--llm-base-url", required=True)
    parser.add_argument("--threads", type=int, default=0, help="0: sequential")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    convs: list[dict[str, Any]] = json.loads(args.conversations.read_text())
    m, status = memory(args.workdir, args.llm_base_url)
    # Warm-up outside the timing: loads spaCy/fastembed lazily and opens the HTTP connection.
    m.add([{"role": "user", "content": "I live in Lisbon and I love hiking."}], user_id="warm-up")
    print("ready", flush=True)
    lock = threading.Lock()
    spans: list[tuple[float, float]] = []
    errors: list[str] = []
    memories = 0
    t0 = time.perf_counter()

    def add(conv: dict[str, Any]) -> None:
        nonlocal memories
        start = time.perf_counter()
        try:
            result = m.add(conv["messages"], user_id=conv["user_id"])
            added = len(result.get("results", []))
            error = None
        except Exception as exc:  # counted and reported: a failed add is a result of the run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            added, error = 0, f"{type(exc).__name__}: {exc!s:.200} (at {where.filename}:{where.lineno})"
        end = time.perf_counter()
        with lock:
            spans.append((start - t0, end - t0))
            memories += added
            if error:
                errors.append(error)
        print(".", flush=True)

    if args.threads:
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(add, convs))
    else:
        for conv in convs:
            add(conv)
    elapsed = time.perf_counter() - t0
    result = {
        "mode": f"pool{args.threads}" if args.threads else "sequential",
        "conversations": len(convs),
        "seconds": round(elapsed, 3),
        "conversations_per_second": round(len(convs) / elapsed, 3),
        "latency_ms": stats_ms([end for _, end in spans]),
        "call_ms": stats_ms([end - start for start, end in spans]),
        "memories_added": memories,
        "errors": len(errors),
        "error_examples": errors[:3],
        "hybrid": status,
    }
    args.out.write_text(json.dumps(result, default=json_default))
    print("done", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
