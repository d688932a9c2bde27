"""The same pipeline with PostgreSQL as the SQL store (API and worker processes share it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, postgres_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("e2e-pg"), redis_url, sql_url=postgres_url)
    try:
        yield s.start()
    finally:
        s.stop()


def test_add_update_history_on_postgres(stack: Stack) -> None:
    first = stack.wait_job(stack.add({"messages": "I live in Quito.", "agent_id": "travel", "run_id": "r1"}))
    assert first["status"] == "SUCCEEDED", first
    memory_id = first["results"][0]["id"]
    second = stack.wait_job(stack.add({"messages": "I live in Lima.", "agent_id": "travel", "run_id": "r1"}))
    assert [(r["event"], r["id"]) for r in second["results"]] == [("UPDATE", memory_id)]
    history = stack.client.get(f"/v1/memories/{memory_id}/history/").json()
    assert [h["new_memory"] for h in history] == ["Lives in Quito", "Lives in Lima"]
    assert [m["memory"] for m in stack.memories(agent_id="travel", run_id="r1")] == ["Lives in Lima"]
