"""``engram``: the command line. Talks to a running API over HTTP, like any client would."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from engram import cli_admin
from engram.cli_admin import _container

app = typer.Typer(help="engram: long-term memory for AI agents.", no_args_is_help=True)
console = Console()
app.add_typer(cli_admin.orgs_app, name="orgs")
app.add_typer(cli_admin.projects_app, name="projects")
app.add_typer(cli_admin.keys_app, name="keys")
ApiOption = Annotated[str, typer.Option("--api", envvar="ENGRAM_API_URL", help="Base URL of the engram API")]
KeyOption = Annotated[str | None, typer.Option("--api-key", envvar="ENGRAM_API_KEY", help="API key of the project")]
DEFAULT_API = "http://127.0.0.1:8000"
POLL_SECONDS = 0.25


def _client(api: str, key: str | None) -> httpx.Client:
    if not key:
        console.print("[red]no API key: pass --api-key or set ENGRAM_API_KEY (engram keys create ...)[/red]")
        raise typer.Exit(2)
    return httpx.Client(base_url=api, timeout=60, headers={"Authorization": f"Token {key}"})


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


def idempotency_key(body: dict[str, Any]) -> str:
    """Derived from the conversation itself: re-running an interrupted ingest resubmits nothing twice."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "ingest:" + hashlib.sha256(canonical.encode()).hexdigest()


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL of conversations")],
    api: ApiOption = DEFAULT_API,
    api_key: KeyOption = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Conversations per request")] = 200,
    wait: Annotated[bool, typer.Option(help="Wait for every job to end")] = True,
) -> None:
    """Submit every conversation of FILE in batches, then follow them to their end with a progress bar.

    Safe to re-run after an interruption: each conversation carries an idempotency key derived from
    its content, so the ones already accepted are not submitted twice.
    """
    conversations = read_conversations(file)
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    batches: list[str] = []
    rejected: list[str] = []
    accepted = duplicates = 0
    with _client(api, api_key) as client, Progress(*columns, console=console) as progress:
        submit = progress.add_task("submitting", total=len(conversations), rate="")
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start : start + batch_size]
            items = [
                {**body, "idempotency_key": body.get("idempotency_key") or idempotency_key(body)} for body in chunk
            ]
            response = _post_with_backoff(client, "/v1/batches/", items)
            answer = response.json()
            batches.append(answer["batch_id"])
            accepted += answer["accepted"]
            duplicates += answer["duplicates"]
            rejected += [f"line {start + r['index'] + 1}: {r['error']}" for r in answer["rejected"]]
            progress.advance(submit, len(chunk))
            progress.update(submit, rate=f"{(start + len(chunk)) / (time.monotonic() - started):.0f} conv/s")
        if not wait:
            console.print(f"ingest: {accepted} accepted, {duplicates} already ingested, {len(rejected)} rejected; "
                          f"batches {' '.join(batches)} (follow them with GET /v1/batches/<id>/)", soft_wrap=True)
            return
        total = accepted + duplicates
        follow = progress.add_task("processing", total=total, rate="")
        statuses: dict[str, dict[str, Any]] = {}
        while True:
            for batch_id in batches:
                if batch_id not in statuses or not statuses[batch_id]["done"]:
                    statuses[batch_id] = client.get(f"/v1/batches/{batch_id}/").json()
            finished = sum(s["counts"]["SUCCEEDED"] + s["counts"]["FAILED"] for s in statuses.values())
            progress.update(
                follow, completed=finished, rate=f"{finished / max(time.monotonic() - started, 1e-9):.1f} jobs/s"
            )
            if all(s["done"] for s in statuses.values()):
                break
            time.sleep(POLL_SECONDS)
    _ingest_summary(statuses, accepted, duplicates, rejected, time.monotonic() - started)


def _post_with_backoff(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    """429 (pipeline behind) and 503 (queue down) are waits, not failures: honour Retry-After."""
    for _ in range(120):
        response = client.post(path, json=body)
        if response.status_code not in (429, 503):
            _fail(response)
            return response
        time.sleep(float(response.headers.get("retry-after", "5")))
    _fail(response)
    return response


def _ingest_summary(
    statuses: dict[str, dict[str, Any]], accepted: int, duplicates: int, rejected: list[str], elapsed: float
) -> None:
    succeeded = sum(s["counts"]["SUCCEEDED"] for s in statuses.values())
    failed = [f for s in statuses.values() for f in s["failed"]]
    rate = (succeeded + len(failed)) / max(elapsed, 1e-9)
    events: dict[str, int] = {}
    for status in statuses.values():
        for kind, count in status.get("events", {}).items():
            events[kind] = events.get(kind, 0) + count
    console.print(
        f"ingest: {accepted} accepted, {duplicates} already ingested, {len(rejected)} rejected; "
        f"{succeeded} succeeded, {len(failed)} failed; memories: {events.get('ADD', 0)} added, "
        f"{events.get('UPDATE', 0)} updated, {events.get('DELETE', 0)} deleted; "
        f"{elapsed:.1f} s, {rate:.1f} jobs/s",
        soft_wrap=True,
    )
    for line in rejected[:20]:
        console.print(f"[yellow]rejected {line}[/yellow]")
    for item in failed[:20]:
        console.print(f"[red]FAILED item {item['index']} ({item['event_id']}): {item['error']}[/red]")


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
    api_key: KeyOption = None,
) -> None:
    """List the memories of a user, agent or run."""
    params = {k: v for k, v in {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}.items() if v}
    with _client(api, api_key) as client:
        response = client.get("/v1/memories/", params=params)
    _fail(response)
    console.print(_memory_table(f"memories of {params}", response.json()))


@app.command()
def search(
    query: str,
    user_id: Annotated[str | None, typer.Option()] = None,
    agent_id: Annotated[str | None, typer.Option()] = None,
    run_id: Annotated[str | None, typer.Option()] = None,
    limit: int = 5,
    api: ApiOption = DEFAULT_API,
    api_key: KeyOption = None,
) -> None:
    """Search the memories of a user, agent or run."""
    body = {"query": query, "limit": limit, "user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    with _client(api, api_key) as client:
        response = client.post("/v1/memories/search/", json={k: v for k, v in body.items() if v is not None})
    _fail(response)
    console.print(_memory_table(f"search: {query!r}", response.json()["results"]))


@app.command()
def job(event_id: str, api: ApiOption = DEFAULT_API, api_key: KeyOption = None) -> None:
    """Show one job (event) with its per-memory results."""
    with _client(api, api_key) as client:
        response = client.get(f"/v1/event/{event_id}/")
    _fail(response)
    console.print_json(response.text)


@app.command()
def providers() -> None:
    """List the LLM, embedder, vector store and graph store providers installed; * marks the selected ones."""
    from config.settings import get_settings
    from engram import plugins

    settings = get_settings()
    selected = {
        "llm": settings.llm.provider,
        "embedder": settings.embedder.provider,
        "vector_store": settings.vector_store.provider,
        "graph_store": settings.graph_store.provider,
    }
    table = Table(title="providers (* selected)")
    for column in ("kind", "name", "selected", "source", "target"):
        table.add_column(column, no_wrap=True)
    missing = []
    for kind in plugins.GROUPS:
        found = plugins.available(kind)
        for info in found.values():
            mark = "*" if info.name == selected[kind] else ""
            table.add_row(kind, info.name, mark, "built-in" if info.builtin else "third-party", info.target)
        if selected[kind] is not None and selected[kind] not in found:
            missing.append(f"{kind} provider {selected[kind]!r} is selected but not installed")
    console.print(table, soft_wrap=True)
    for line in missing:
        console.print(f"[red]{line}[/red]")
    if missing:
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Bring the SQL schema to the latest version."""
    _container()
    console.print("schema is up to date")


@app.command()
def bootstrap(
    print_key: Annotated[bool, typer.Option("--print-key", help="Print only the key (for scripts)")] = False,
) -> None:
    """Development only: a new API key for the development project (created on first use)."""
    from engram.bootstrap import ensure_dev_project

    c = _container()
    if c.settings.environment == "production":
        console.print("[red]bootstrap is for development; use `engram orgs/projects/keys create`[/red]")
        raise typer.Exit(2)
    created = ensure_dev_project(c)
    if print_key:
        print(created.key)
        return
    console.print(f"project {created.project_id}; API key (shown once): [bold]{created.key}[/bold]")


webhooks_app = typer.Typer(help="Webhook deliveries.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("sweep")
def webhooks_sweep() -> None:
    """Re-send webhook deliveries whose queue message was lost (what `celery beat` runs every minute)."""
    from workers.webhooks import sweep

    console.print(f"{sweep(_container())} overdue deliveries sent to the webhooks queue")


# Issue #8: the job sweeper, once, or as a long-running process (the `sweeper` of the Procfile and compose).
@app.command("sweep")
def sweep_jobs(
    every: Annotated[float | None, typer.Option(min=0.1, help="Sweep every SECONDS until stopped")] = None,
) -> None:
    """Re-send jobs left PENDING/RUNNING past pipeline.stuck_after_seconds (their queue message was lost)."""
    import logging

    from sqlalchemy.exc import SQLAlchemyError

    from config.container import Container
    from config.settings import get_settings
    from engram.ingest import BROKER_ERRORS
    from workers.sweeper import sweep_once

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    c = Container(get_settings())  # no migration: the API and workers own the schema
    try:
        while True:
            try:
                report = sweep_once(c)
            except (SQLAlchemyError, *BROKER_ERRORS) as exc:
                if every is None:
                    raise
                # A long-running sweeper outlives outages: the next pass finds the same jobs.
                logging.getLogger("engram.sweeper").warning("sweep failed: %s: %s", type(exc).__name__, exc)
            else:
                if every is None:
                    console.print(f"{report.total} stuck jobs re-sent {dict(report.resent)}")
            if every is None:
                return
            time.sleep(every)
    finally:
        c.close()


if __name__ == "__main__":
    app()


app.registered_commands += cli_admin.admin.registered_commands  # export, import (engram/cli_admin.py)
