"""``engram`` administration: organisations, projects, keys, export and import. These talk to SQL (and the
vector store) directly, not to the API: they are what an operator runs where the deployment's settings live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

console = Console()
# Top-level commands (export, import) are registered on the main app from here (engram/cli.py).
admin = typer.Typer()


def _container() -> Any:
    from config.container import Container
    from config.settings import get_settings

    container = Container(get_settings())
    container.migrate()
    return container


orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)


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


@admin.command("export")
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


@admin.command("import")
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


