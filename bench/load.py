"""Section 3: ingest API requests/s and latency under load: ``POST /v1/memories/`` (async_mode default)
against a bare FastAPI endpoint as the ceiling, both under uvicorn with the same worker count, driven
by ``wrk`` on loopback for a bounded time. No Celery worker runs meanwhile (the API's own cost is
measured: validate, job row in SQLite, enqueue in Redis); the queued jobs are purged afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.common import BIN, ROOT, Child, base_env, console, free_port
from bench.stack import EngramStack

BODY = {"messages": [{"role": "user", "content": "I live in Lisbon and I love hiking."}], "user_id": "load-user"}
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _lua(path: Path, key: str | None) -> Path:
    headers = ['wrk.headers["Content-Type"] = "application/json"']
    if key:
        headers.append(f'wrk.headers["Authorization"] = "Token {key}"')
    path.write_text("\n".join(['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(BODY))}", *headers]) + "\n")
    return path


def _ms(value: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", value)
    if not match:
        raise ValueError(f"cannot parse wrk latency {value!r}")
    return round(float(match.group(1)) * UNITS[match.group(2)], 2)


def wrk(url: str, script: Path, seconds: int, connections: int, threads: int) -> dict[str, Any]:
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    percentiles = {f"p{p}": _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "requests_per_second": round(rps, 1),
        "requests": requests,
        "latency_ms": percentiles,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else None,
    }


def run(workdir: Path, redis_url: str, seconds: int, connections: int, api_workers: int) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install -y wrk)"}
    threads = 2
    results: dict[str, Any] = {
        "seconds": seconds,
        "connections": connections,
        "wrk_threads": threads,
        "uvicorn_workers": api_workers,
        "body": BODY,
    }
    stack = EngramStack(workdir / "engram", redis_url)
    try:
        stack.start_api(workers=api_workers)
        script = _lua(workdir / "engram.lua", stack.api_key)
        url = f"{stack.base_url}/v1/memories/"
        wrk(url, script, 2, connections, threads)  # warm-up: connections, key cache, SQLite pages
        results["engram"] = wrk(url, script, seconds, connections, threads)
        results["engram"]["jobs_recorded"] = _count_jobs(stack)
    finally:
        stack.stop()
    port = free_port()
    args = [
        str(BIN / "uvicorn"),
        "--factory",
        "bench.bare_app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        str(api_workers),
    ]
    bare = Child("bare-api", args, env=base_env(), cwd=ROOT, log_dir=workdir)
    try:
        import httpx

        bare.wait_until(lambda: _up(httpx, port))
        script = _lua(workdir / "bare.lua", None)
        url = f"http://127.0.0.1:{port}/v1/memories/"
        wrk(url, script, 2, connections, threads)
        results["bare"] = wrk(url, script, seconds, connections, threads)
    finally:
        bare.stop()
    results["ratio_to_bare"] = round(
        results["engram"]["requests_per_second"] / max(results["bare"]["requests_per_second"], 1e-9), 3
    )
    console.print(
        f"  ingest API: engram {results['engram']['requests_per_second']} req/s p99 "
        f"{results['engram']['latency_ms'].get('p99')} ms; bare {results['bare']['requests_per_second']} req/s p99 "
        f"{results['bare']['latency_ms'].get('p99')} ms"
    )
    return results


def _up(httpx: Any, port: int) -> bool:
    try:
        return httpx.post(f"http://127.0.0.1:{port}/v1/memories/", json=BODY, timeout=1).status_code == 202
    except httpx.HTTPError:
        return False


def _count_jobs(stack: EngramStack) -> int | None:
    import sqlite3

    try:
        with sqlite3.connect(stack.workdir / "engram.db") as db:
            return int(db.execute("select count(*) from jobs").fetchone()[0])
    except sqlite3.Error:
        return None
