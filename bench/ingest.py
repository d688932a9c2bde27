"""Section 1: ingest throughput and job latency, engram (API batch endpoint + real Celery workers) vs mem0 OSS.

Both systems get the same conversations and the same LLM stand-in (its own process, a set latency).
engram is measured with the Procfile's prefork worker and with the threaded LLM worker; mem0 with
``Memory.add`` sequentially and from a 16-thread pool. Peak RSS of the API and worker processes is
sampled during the engram runs and of the mem0 process during its runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, base_env, console, progress, stats_ms
from bench.memory import PeakRss
from bench.stack import WORKER_CONFIGS, EngramStack, StandIn
from bench.workload import conversations

BATCH_MAX = 1000
# Throughput and latency come from the jobs' own finished_at, so polling slower loses no precision; each
# batch-status poll costs the API CPU the workers share (at 0.1 s: ~3% of the machine).
POLL_SECONDS = 0.5
JOB_TIMEOUT_SECONDS = 900
MEM0_THREADS = 16


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_engram(
    convs: list[dict[str, Any]], stand_in: StandIn, config: str, workdir: Path, redis_url: str
) -> dict[str, Any]:
    stack = EngramStack(workdir, redis_url, llm_base_url=stand_in.base_url)
    try:
        stack.start_api()
        stack.start_workers(WORKER_CONFIGS[config])
        return measure(stack, convs, stand_in, config)
    except Exception:
        for name, child in (("api", stack.api), *stack.workers.items()):
            if child is not None:
                console.print(f"[red]--- {name} log ---[/red]\n" + child.log())
        raise
    finally:
        stack.stop()


def measure(stack: EngramStack, convs: list[dict[str, Any]], stand_in: StandIn, config: str) -> dict[str, Any]:
    """Ingest ``convs`` through a running stack's batch endpoint and wait for every job."""
    # Warm-up outside the timing: first LLM connection, first Lance commit, SQL caches.
    warm = stack.client.post("/v1/memories/", json={**convs[0], "user_id": "warm-up"})
    warm.raise_for_status()
    _wait_job(stack, warm.json()["event_id"])
    calls_before = stand_in.calls()
    with PeakRss(stack.pids()) as rss, progress() as bar:
        task = bar.add_task(f"engram {config:8s} @{stand_in.latency_ms:.0f} ms", total=len(convs))
        wall0 = time.time()
        t0 = time.perf_counter()
        event_ids, batches = [], []
        for start in range(0, len(convs), BATCH_MAX):
            response = stack.client.post("/v1/batches/", json=convs[start : start + BATCH_MAX])
            response.raise_for_status()
            body = response.json()
            batches.append(body["batch_id"])
            event_ids += [e for e in body["event_ids"] if e]
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            done = 0
            for batch_id in batches:
                status = stack.client.get(f"/v1/batches/{batch_id}/").json()
                done += status["counts"]["SUCCEEDED"] + status["counts"]["FAILED"]
            bar.update(task, completed=done)
            if done >= len(event_ids):
                break
            time.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - t0
    jobs = [stack.client.get(f"/v1/event/{e}/").json() for e in event_ids]
    calls = {k: v - calls_before.get(k, 0) for k, v in stand_in.calls().items() if v - calls_before.get(k, 0)}
    finished = [j for j in jobs if j.get("finished_at")]
    last = max((_ts(j["finished_at"]) for j in finished), default=wall0 + elapsed)
    failed = [j for j in jobs if j["status"] == "FAILED"]
    span = max(last - wall0, 1e-9)
    return {
        "system": "engram",
        "mode": config,
        "workers": [w.__dict__ for w in WORKER_CONFIGS[config]],
        "conversations": len(convs),
        "seconds": round(span, 3),
        "conversations_per_second": round(len(finished) / span, 3),
        "latency_ms": stats_ms([_ts(j["finished_at"]) - _ts(j["created_at"]) for j in finished]),
        "memories_added": sum(1 for j in jobs for r in j.get("results") or [] if r["event"] == "ADD"),
        "errors": len(failed) + (len(event_ids) - len(finished)),
        "error_examples": [j.get("error") for j in failed[:3]],
        "llm_calls": calls,
        "peak_rss": rss.peaks(),
        "retries": sum(max(0, int(j.get("attempts") or 0) - 1) for j in jobs),
        # Celery retries of any cause, mostly "scope busy" (reconcile of the same user serialised).
        "task_retries": sum(
            w.log_path.read_text(errors="replace").count("retry: Retry in") for w in stack.workers.values()
        ),
    }


def _wait_job(stack: EngramStack, event_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stack.client.get(f"/v1/event/{event_id}/").json()
        if job["status"] in ("SUCCEEDED", "FAILED"):
            if job["status"] == "FAILED":
                raise RuntimeError(f"warm-up job failed: {job.get('error')}")
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise TimeoutError("warm-up job did not finish")


def run_mem0(convs: list[dict[str, Any]], stand_in: StandIn, threads: int, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    path, out = workdir / "conversations.json", workdir / "result.json"
    path.write_text(json.dumps(convs))
    args = [
        PYTHON,
        "-m",
        "bench.mem0_ingest",
        "--conversations",
        str(path),
        "--workdir",
        str(workdir),
        "--llm-base-url",
        stand_in.base_url,
        "--threads",
        str(threads),
        "--out",
        str(out),
    ]
    log = open(workdir / "mem0.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, cwd=ROOT, env=base_env(), stdout=subprocess.PIPE, stderr=log, text=True)
    calls_before = stand_in.calls()
    mode = f"pool{threads}" if threads else "sequential"
    try:
        assert proc.stdout is not None
        with progress() as bar, PeakRss({"mem0": proc.pid}) as rss:
            task = bar.add_task(f"mem0   {mode:8s} @{stand_in.latency_ms:.0f} ms", total=len(convs))
            for line in proc.stdout:
                if line.startswith("."):
                    bar.advance(task)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"mem0 ingest failed ({proc.returncode}):\n{(workdir / 'mem0.log').read_text()[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["system"] = "mem0"
    result["llm_calls"] = {
        k: v - calls_before.get(k, 0) for k, v in stand_in.calls().items() if v - calls_before.get(k, 0)
    }
    result["peak_rss"] = rss.peaks()
    return result


def run(
    n: int,
    latencies: list[float],
    workdir: Path,
    redis_url: str,
    engram_configs: tuple[str, ...] = ("prefork", "threads"),
) -> list[dict[str, Any]]:
    convs = conversations(n)
    results = []
    for latency in latencies:
        stand_in = StandIn(workdir, latency)
        try:
            for config in engram_configs:
                result = run_engram(convs, stand_in, config, workdir / f"engram-{config}-{int(latency)}", redis_url)
                results.append({**result, "llm_latency_ms": latency})
                _say(results[-1])
            for threads in (0, MEM0_THREADS):
                result = run_mem0(convs, stand_in, threads, workdir / f"mem0-{threads}-{int(latency)}")
                results.append({**result, "llm_latency_ms": latency})
                _say(results[-1])
        finally:
            stand_in.stop()
    return results


def _say(r: dict[str, Any]) -> None:
    console.print(
        f"  {r['system']:6s} {r['mode']:10s} @{r['llm_latency_ms']:.0f} ms: "
        f"{r['conversations_per_second']:.2f} conv/s, "
        f"latency p50 {r['latency_ms'].get('p50')} ms p95 {r['latency_ms'].get('p95')} ms, "
        f"errors {r['errors']}, memories {r['memories_added']}, llm calls {r.get('llm_calls')}"
    )
