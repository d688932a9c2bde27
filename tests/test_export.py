"""Back-up and restore with the real CLI: a project exported from one deployment and imported into a
fresh one (its own SQL file and vector directory) keeps every memory, history row and feedback row."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from config.container import Container
from config.settings import Settings
from engram.sql import tables
from tests.stack import Stack

pytestmark = pytest.mark.e2e
PAST_UNIX = 1_700_000_000  # 2023-11-14: the conversation's own time, kept as created_at


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("export-source"), redis_url)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("export-target"), redis_url)
    try:
        yield s.start()
    finally:
        s.stop()


def sql_rows(stack: Stack, table: sa.Table, project_id: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(stack.env["ENGRAM_SQL__URL"])
    try:
        with engine.connect() as conn:
            query = sa.select(table).where(table.c.project_id == project_id).order_by(table.c.id)
            return [dict(r) for r in conn.execute(query).mappings()]
    finally:
        engine.dispose()


def key_for(stack: Stack, project_id: str) -> httpx.Client:
    created = stack.cli("keys", "create", "--project", project_id)
    assert created.returncode == 0, created.stdout + created.stderr
    key = re.search(r"(eng_\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    return httpx.Client(base_url=stack.base_url, timeout=60, headers={"Authorization": f"Token {key}"})


def scenario(stack: Stack) -> dict[str, Any]:
    """Adds (one with its own timestamp, one with a full scope), an update, a delete, feedback, settings."""
    first = stack.wait_job(stack.add({"messages": "I live in Oslo. I love skiing.", "user_id": "exp-ana",
                                      "metadata": {"src": "chat", "n": 1}}))
    second = stack.wait_job(stack.add({"messages": "I play the cello.", "user_id": "exp-ana", "agent_id": "tutor",
                                       "run_id": "r1", "app_id": "school", "timestamp": PAST_UNIX,
                                       "expiration_date": "2099-01-01", "immutable": True}))
    third = stack.wait_job(stack.add({"messages": "I drink oat milk.", "user_id": "exp-ana"}))
    assert [j["status"] for j in (first, second, third)] == ["SUCCEEDED"] * 3
    by_text = {r["memory"]: r["id"] for j in (first, second, third) for r in j["results"]}
    lives, cello, milk = by_text["Lives in Oslo"], by_text["Plays the cello"], by_text["Drinks oat milk"]
    edited = stack.client.put(f"/v1/memories/{lives}/", json={"text": "Lives in Bergen", "metadata": {"moved": True}})
    assert edited.status_code == 200, edited.text
    for memory_id, verdict in ((lives, "POSITIVE"), (milk, "NEGATIVE")):
        given = stack.client.post("/v1/feedback/", json={"memory_id": memory_id, "feedback": verdict,
                                                         "feedback_reason": f"reason {verdict}"})
        assert given.status_code == 200, given.text
    assert stack.client.delete(f"/v1/memories/{milk}/").status_code == 200
    project_id = stack.client.get("/v1/ping/").json()["project_id"]
    configured = stack.cli("projects", "configure", project_id, "--custom-instructions", "Only hobbies.",
                           "--fact-extraction-prompt", "Extract {today}", "--update-memory-prompt", "Decide")
    assert configured.returncode == 0, configured.stdout + configured.stderr
    hook = stack.client.post(f"/api/v1/webhooks/projects/{project_id}/",
                             json={"url": "http://1.1.1.1/hook", "event_types": ["job_failed"]})
    assert hook.status_code == 201, hook.text
    return {"project_id": project_id, "live": [lives, cello, by_text["Loves skiing"]], "deleted": milk,
            "webhook_secret": hook.json()["secret"]}


def test_a_project_survives_export_and_import_into_a_fresh_deployment(
    source: Stack, target: Stack, tmp_path: Path
) -> None:
    made = scenario(source)
    project_id = made["project_id"]
    backup = tmp_path / "backup.jsonl"
    exported = source.cli("export", "--project", project_id, str(backup))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "exported 3 memories, 2 history rows of deleted memories and 2 feedback rows" in exported.stdout
    text = backup.read_text()
    head = json.loads(text.splitlines()[0])
    assert (head["format"], head["version"], head["not_exported"]) == ("engram-export", 2, ["api_keys", "webhooks"])
    assert made["webhook_secret"] not in text and source.api_key not in text
    assert "key_hash" not in text and "whsec_" not in text

    imported = target.cli("import", str(backup))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    again = target.cli("import", str(backup))  # a re-run restores nothing twice
    assert again.returncode == 0, again.stdout + again.stderr

    restored = key_for(target, project_id)
    fields = ("id", "memory", "hash", "metadata", "categories", "user_id", "agent_id", "run_id", "app_id",
              "created_at", "updated_at", "expiration_date", "immutable")
    for memory_id in made["live"]:
        before = source.client.get(f"/v1/memories/{memory_id}/").json()
        after = restored.get(f"/v1/memories/{memory_id}/").json()
        assert {k: after.get(k) for k in fields} == {k: before.get(k) for k in fields}
    cello = restored.get(f"/v1/memories/{made['live'][1]}/").json()
    assert cello["created_at"].startswith("2023-11-14") and cello["app_id"] == "school" and cello["immutable"]
    assert cello["categories"]  # assigned at add time, kept by the restore
    listed = restored.get("/v1/memories/", params={"user_id": "exp-ana"}).json()
    assert sorted(m["id"] for m in listed) == sorted(made["live"])
    hits = restored.post("/v1/memories/search/", json={"query": "which city", "user_id": "exp-ana", "limit": 1})
    assert [m["memory"] for m in hits.json()["results"]] == ["Lives in Bergen"]  # vectors restored

    assert restored.get(f"/v1/memories/{made['deleted']}/").status_code == 404
    for memory_id in [*made["live"], made["deleted"]]:
        assert restored.get(f"/v1/memories/{memory_id}/history/").json() == source.client.get(
            f"/v1/memories/{memory_id}/history/"
        ).json()
    assert [h["event"] for h in restored.get(f"/v1/memories/{made['deleted']}/history/").json()] == ["ADD", "DELETE"]

    source_history = sql_rows(source, tables.memory_history, project_id)
    assert len(source_history) == 6  # 4 ADD, 1 UPDATE, 1 DELETE
    assert sql_rows(target, tables.memory_history, project_id) == source_history
    source_feedback = sql_rows(source, tables.feedback, project_id)
    assert {(f["memory_id"], f["feedback"]) for f in source_feedback} == {
        (made["live"][0], "POSITIVE"), (made["deleted"], "NEGATIVE")
    }
    assert sql_rows(target, tables.feedback, project_id) == source_feedback

    engine = sa.create_engine(target.env["ENGRAM_SQL__URL"])
    with engine.connect() as conn:
        project = conn.execute(sa.select(tables.projects).where(tables.projects.c.id == project_id)).mappings().one()
    engine.dispose()
    assert (project["custom_instructions"], project["custom_fact_extraction_prompt"],
            project["custom_update_memory_prompt"]) == ("Only hobbies.", "Extract {today}", "Decide")
    assert sql_rows(target, tables.webhooks, project_id) == []  # webhooks (and their secrets) stay behind


def test_a_version_1_file_still_imports(source: Stack, tmp_path: Path, redis_url: str) -> None:
    """A file as the previous engram wrote it: memories (with vectors and history) only, no ``kind``."""
    project_id = source.client.get("/v1/ping/").json()["project_id"]
    assert source.wait_job(source.add({"messages": "I knit socks.", "user_id": "exp-v1"}))["status"] == "SUCCEEDED"
    current = tmp_path / "current.jsonl"
    assert source.cli("export", "--project", project_id, str(current)).returncode == 0
    lines = [json.loads(line) for line in current.read_text().splitlines()]
    memories = [{k: v for k, v in doc.items() if k != "kind"} for doc in lines[1:] if doc["kind"] == "memory"]
    head = {k: lines[0][k] for k in ("format", "project_id", "project_name", "org_id", "exported_at", "embedder")}
    old = tmp_path / "v1.jsonl"
    old.write_text("\n".join(json.dumps(d) for d in [{**head, "version": 1, "count": len(memories)}, *memories]))

    fresh = Stack(tmp_path / "fresh", redis_url)  # a deployment that is only its files: the CLI needs no server
    fresh.workdir.mkdir()
    done = fresh.cli("import", str(old))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"imported {len(memories)} memories" in done.stdout
    history = sql_rows(fresh, tables.memory_history, project_id)
    assert sorted(h["id"] for h in history) == sorted(h["id"] for m in memories for h in m["history"])
    c = Container(Settings(environment="test", sql={"url": fresh.env["ENGRAM_SQL__URL"]},  # type: ignore[arg-type]
                           vector_store={"path": fresh.workdir / "vectors"}, redis={"url": redis_url}))
    try:
        stored = c.vector_store.list(project_id=project_id, limit=10_000, include_expired=True)
        assert sorted((r.id, r.memory, r.created_at.isoformat()) for r in stored) == sorted(
            (m["id"], m["memory"], m["created_at"]) for m in memories
        )
    finally:
        c.close()

    newer = tmp_path / "v3.jsonl"
    newer.write_text(json.dumps({**head, "version": 3}) + "\n")
    refused = fresh.cli("import", str(newer))
    assert refused.returncode == 1 and "reads versions 1, 2" in refused.stdout
