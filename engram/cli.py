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

app = typer.Typer(help="engram: long-term memory for AI agents.", no_args_is_help=True)
console = Console()
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
    console.print(
        f"ingest: {accepted} accepted, {duplicates} already ingested, {len(rejected)} rejected; "
        f"{succeeded} succeeded, {len(failed)} failed; {elapsed:.1f} s, {rate:.1f} jobs/s",
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


def _container() -> Any:
    from config.container import Container
    from config.settings import get_settings

    container = Container(get_settings())
    container.migrate()
    return container


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


orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
app.add_typer(projects_app, name="projects")
app.add_typer(keys_app, name="keys")


@orgs_app.command("create")
def orgs_create(name: str) -> None:
    console.print(_container().tenancy.create_org(name))


@projects_app.command("create")
def projects_create(name: str, org: Annotated[str, typer.Option(help="Organisation id")]) -> None:
    console.print(_container().tenancy.create_project(org, name))


@projects_app.command("list")
def projects_list() -> None:
    table = Table(title="projects")
    for column in ("id", "name", "org_id", "org_name"):
        table.add_column(column)
    for row in _container().tenancy.list_projects():
        table.add_row(row["id"], row["name"], row["org_id"], row["org_name"])
    console.print(table)


@projects_app.command("configure")
def projects_configure(
    project: str,
    custom_instructions: Annotated[str | None, typer.Option(help="Extra fact-extraction instructions")] = None,
    fact_extraction_prompt: Annotated[
        str | None, typer.Option(help="Replaces the fact-extraction prompt for this project ('' clears it)")
    ] = None,
    update_memory_prompt: Annotated[
        str | None, typer.Option(help="Replaces the memory-update prompt for this project ('' clears it)")
    ] = None,
) -> None:
    """Per-project extraction settings: Mem0's custom_instructions, custom_fact_extraction_prompt and
    custom_update_memory_prompt (used in preference to the settings-level prompts)."""
    try:
        _container().tenancy.configure_project(
            project,
            custom_instructions=custom_instructions,
            custom_fact_extraction_prompt=fact_extraction_prompt,
            custom_update_memory_prompt=update_memory_prompt,
        )
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print("configured")


@keys_app.command("create")
def keys_create(project: Annotated[str, typer.Option(help="Project id")], name: str = "default") -> None:
    created = _container().tenancy.create_key(project, name)
    console.print(f"key id {created.id}; API key (shown once): [bold]{created.key}[/bold]")


@keys_app.command("list")
def keys_list(project: Annotated[str | None, typer.Option()] = None) -> None:
    table = Table(title="API keys")
    for column in ("id", "project", "name", "prefix", "created", "revoked"):
        table.add_column(column)
    for row in _container().tenancy.list_keys(project):
        table.add_row(
            row["id"],
            row["project_id"],
            row["name"],
            row["prefix"] + "…",
            str(row["created_at"])[:19],
            str(row["revoked_at"] or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    if not _container().tenancy.revoke_key(key_id):
        console.print("[red]no live key with that id[/red]")
        raise typer.Exit(1)
    console.print("revoked")


@app.command("export")
def export_project(project: Annotated[str, typer.Option()], file: Path) -> None:
    """Back up a project: memories (ids, metadata, timestamps, vectors), every history row (deleted
    memories' too) and the feedback, as JSON Lines. API keys and webhook secrets are not exported."""
    from engram.export import write_export

    c = _container()
    if c.tenancy.project(project) is None:
        console.print(f"[red]project {project} not found[/red]")
        raise typer.Exit(1)
    with file.open("w") as out:
        done = write_export(c, project, out)
    console.print(
        f"exported {len(done.memories)} memories, {len(done.history)} history rows of deleted memories "
        f"and {len(done.feedback)} feedback rows to {file}"
    )


@app.command("import")
def import_project(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    project: Annotated[str | None, typer.Option(help="Target project (default: the exported one)")] = None,
) -> None:
    """Restore an export into this deployment (creating the project if it is missing). Safe to re-run."""
    from engram.export import import_documents, import_rest, read_export

    c = _container()
    try:
        with file.open() as lines:
            export = read_export(lines)
    except ValueError as exc:  # json.JSONDecodeError included
        console.print(f"[red]{file}: {exc}[/red]")
        raise typer.Exit(1) from exc
    head, docs = export.head, export.memories
    target = project or head["project_id"]
    if c.tenancy.project(target) is None:
        target = _recreate_project(c, head, target)
    with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), console=console) as progress:
        task = progress.add_task("import", total=len(docs))
        for start in range(0, len(docs), 500):
            import_documents(c, target, head, docs[start : start + 500])
            progress.advance(task, len(docs[start : start + 500]))
    import_rest(c, target, export)
    console.print(
        f"imported {len(docs)} memories, {len(export.history)} history rows of deleted memories "
        f"and {len(export.feedback)} feedback rows into {target}"
    )


def _recreate_project(c: Any, head: dict[str, Any], project_id: str) -> str:
    """Recreate the exported project under its own id (and settings), so its memories keep their project."""
    from engram.export import PROJECT_SETTINGS  # version 1 files have no project_settings
    from engram.sql import tables
    from engram.sql.jobs import utcnow

    with c.engine.begin() as conn:
        org_id = head.get("org_id") or "org_imported"
        if c.tenancy.project(project_id, conn=conn) is None:
            exists = conn.execute(tables.organizations.select().where(tables.organizations.c.id == org_id)).first()
            if exists is None:
                conn.execute(
                    tables.organizations.insert().values(id=org_id, name=f"imported {org_id}", created_at=utcnow())
                )
            conn.execute(
                tables.projects.insert().values(
                    id=project_id,
                    org_id=org_id,
                    name=head.get("project_name") or project_id,
                    created_at=utcnow(),
                    **{k: v for k, v in (head.get("project_settings") or {}).items() if k in PROJECT_SETTINGS},
                )
            )
    return project_id


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
