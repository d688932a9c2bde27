"""``engram``: the command line. Talks to a running API over HTTP, like any client would."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(help="engram: long-term memory for AI agents.", no_args_is_help=True)
console = Console()
ApiOption = Annotated[str, typer.Option("--api", envvar="ENGRAM_API_URL", help="Base URL of the engram API")]
DEFAULT_API = "http://127.0.0.1:8000"
POLL_SECONDS = 0.25


def _client(api: str) -> httpx.Client:
    return httpx.Client(base_url=api, timeout=60)


def _fail(response: httpx.Response) -> None:
    if response.status_code >= 400:
        console.print(f"[red]{response.request.method} {response.request.url.path} → {response.status_code}[/red]")
        console.print(response.text)
        raise typer.Exit(1)


def read_conversations(path: Path) -> list[dict[str, Any]]:
    """One Mem0 add body per line (``messages`` plus user_id/agent_id/run_id/metadata)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{path}:{number}: not JSON ({exc})") from exc
    return rows


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL of conversations")],
    api: ApiOption = DEFAULT_API,
    wait: Annotated[bool, typer.Option(help="Wait for every job to end")] = True,
) -> None:
    """Submit every conversation of FILE, then follow the jobs to their end with a progress bar."""
    conversations = read_conversations(file)
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    event_ids: list[str] = []
    with _client(api) as client, Progress(*columns, console=console) as progress:
        submit = progress.add_task("submitting", total=len(conversations), rate="")
        for body in conversations:
            response = client.post("/v1/memories/", json={**body, "async_mode": True})
            _fail(response)
            event_ids.append(response.json()["event_id"])
            progress.advance(submit)
        if not wait:
            return
        done_task = progress.add_task("processing", total=len(event_ids), rate="")
        pending = set(event_ids)
        jobs: dict[str, dict[str, Any]] = {}
        while pending:
            for event_id in list(pending):
                job = client.get(f"/v1/event/{event_id}/").json()
                if job["status"] in ("SUCCEEDED", "FAILED"):
                    jobs[event_id] = job
                    pending.discard(event_id)
                    progress.advance(done_task)
            rate = len(jobs) / max(time.monotonic() - started, 1e-9)
            progress.update(done_task, rate=f"{rate:.1f} jobs/s")
            if pending:
                time.sleep(POLL_SECONDS)
    elapsed = time.monotonic() - started
    statuses = Counter(j["status"] for j in jobs.values())
    events = Counter(e["event"] for j in jobs.values() for e in j["results"])
    table = Table(title="ingest summary")
    for column in ("jobs", "succeeded", "failed", "ADD", "UPDATE", "DELETE", "seconds", "jobs/s"):
        table.add_column(column, justify="right")
    table.add_row(str(len(jobs)), str(statuses["SUCCEEDED"]), str(statuses["FAILED"]), str(events["ADD"]),
                  str(events["UPDATE"]), str(events["DELETE"]), f"{elapsed:.1f}", f"{len(jobs) / elapsed:.1f}")
    console.print(table)
    for job in jobs.values():
        if job["status"] == "FAILED":
            console.print(f"[red]FAILED {job['id']}: {job['error']}[/red]")


def _memory_table(title: str, memories: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    table.add_column("memory")
    table.add_column("score", justify="right")
    table.add_column("updated")
    table.add_column("id", style="dim")
    for m in memories:
        score = f"{m['score']:.3f}" if m.get("score") is not None else ""
        table.add_row(m["memory"], score, m["updated_at"][:19], m["id"])
    return table


@app.command()
def memories(
    user_id: Annotated[str | None, typer.Option()] = None,
    agent_id: Annotated[str | None, typer.Option()] = None,
    run_id: Annotated[str | None, typer.Option()] = None,
    api: ApiOption = DEFAULT_API,
) -> None:
    """List the memories of a user, agent or run."""
    params = {k: v for k, v in {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}.items() if v}
    with _client(api) as client:
        response = client.get("/v1/memories/", params=params)
    _fail(response)
    console.print(_memory_table(f"memories of {params}", response.json()["results"]))


@app.command()
def search(
    query: str,
    user_id: Annotated[str | None, typer.Option()] = None,
    agent_id: Annotated[str | None, typer.Option()] = None,
    run_id: Annotated[str | None, typer.Option()] = None,
    limit: int = 5,
    api: ApiOption = DEFAULT_API,
) -> None:
    """Search the memories of a user, agent or run."""
    body = {"query": query, "limit": limit, "user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    with _client(api) as client:
        response = client.post("/v1/memories/search/", json={k: v for k, v in body.items() if v is not None})
    _fail(response)
    console.print(_memory_table(f"search: {query!r}", response.json()["results"]))


@app.command()
def job(event_id: str, api: ApiOption = DEFAULT_API) -> None:
    """Show one job (event) with its per-memory results."""
    with _client(api) as client:
        response = client.get(f"/v1/event/{event_id}/")
    _fail(response)
    console.print_json(response.text)


@app.command()
def providers() -> None:
    """List the LLM, embedder, vector store and graph store providers installed."""
    from engram import plugins

    table = Table(title="providers")
    for column in ("kind", "name", "source", "target"):
        table.add_column(column)
    for kind in plugins.GROUPS:
        for info in plugins.available(kind).values():
            table.add_row(kind, info.name, "built-in" if info.builtin else "plugin", info.target)
    console.print(table)


@app.command()
def migrate() -> None:
    """Bring the SQL schema to the latest version."""
    from config.container import Container
    from config.settings import get_settings

    container = Container(get_settings())
    container.migrate()
    console.print("schema is up to date")


if __name__ == "__main__":
    app()
