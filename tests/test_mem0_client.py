"""The official mem0ai client (2.2.1), unmodified, against a live engram API and worker."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.stack import Stack

os.environ["MEM0_TELEMETRY"] = "False"  # before mem0 is imported: no telemetry from tests

from mem0 import AsyncMemoryClient, MemoryClient  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("mem0-client"), redis_url)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> MemoryClient:
    return MemoryClient(api_key=stack.api_key, host=stack.base_url)


def settle(stack: Stack, response: dict[str, Any]) -> dict[str, Any]:
    assert response["status"] == "PENDING" and response["event_id"]
    return stack.wait_job(response["event_id"])


def test_ping_gives_the_client_its_ids(client: MemoryClient) -> None:
    assert client.org_id and client.project_id and client.project_id.startswith("proj_")


def test_add_search_get_all_get(client: MemoryClient, stack: Stack) -> None:
    job = settle(
        stack, client.add("I live in Oslo. I love skiing.", filters={"user_id": "cli-ana"}, metadata={"src": "client"})
    )
    assert job["status"] == "SUCCEEDED"
    assert sorted(r["memory"] for r in job["results"]) == ["Lives in Oslo", "Loves skiing"]
    found = client.search("where does she live", filters={"user_id": "cli-ana"}, top_k=1, rerank=True)
    assert [m["memory"] for m in found["results"]] == ["Lives in Oslo"]
    assert found["results"][0]["metadata"] == {"src": "client"}
    assert (
        client.search("x", filters={"AND": [{"user_id": "cli-ana"}, {"metadata": {"src": "other"}}]})["results"] == []
    )
    page = client.get_all(filters={"user_id": "cli-ana"}, page=1, page_size=1)
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"] and page["previous"] is None
    everything = client.get_all(filters={"AND": [{"user_id": "cli-ana"}, {"created_at": {"gte": "2020-01-01"}}]})
    assert {m["memory"] for m in everything["results"]} == {"Lives in Oslo", "Loves skiing"}
    one = client.get(everything["results"][0]["id"])
    assert one["id"] == everything["results"][0]["id"] and one["user_id"] == "cli-ana"


def test_update_history_delete(client: MemoryClient, stack: Stack) -> None:
    job = settle(
        stack, client.add([{"role": "user", "content": "I own a green bike."}], filters={"user_id": "cli-upd"})
    )
    memory_id = job["results"][0]["id"]
    client.update(memory_id, text="Owns a red bike", metadata={"checked": True})
    assert client.get(memory_id)["memory"] == "Owns a red bike"
    assert [h["event"] for h in client.history(memory_id)] == ["ADD", "UPDATE"]
    assert "deleted" in client.delete(memory_id)["message"]
    with pytest.raises(Exception, match="not found"):
        client.get(memory_id)


def test_expiration_date_and_immutable(client: MemoryClient, stack: Stack) -> None:
    old = settle(
        stack, client.add("I am training for a marathon.", filters={"user_id": "cli-exp"}, expiration_date="2020-01-01")
    )
    assert old["status"] == "SUCCEEDED"
    assert client.get_all(filters={"user_id": "cli-exp"})["count"] == 0  # expired: out of lists and search
    assert client.search("marathon", filters={"user_id": "cli-exp"})["results"] == []
    kept = settle(stack, client.add("I am allergic to cats.", filters={"user_id": "cli-imm"}, immutable=True))
    memory_id = kept["results"][0]["id"]
    with pytest.raises(Exception, match="immutable"):
        client.update(memory_id, text="Likes cats")
    assert client.get(memory_id)["memory"] == "Is allergic to cats"


def test_batch_feedback_export(client: MemoryClient, stack: Stack) -> None:
    job = settle(stack, client.add("I play the oboe. I collect stamps.", filters={"user_id": "cli-batch"}))
    ids = [r["id"] for r in job["results"]]
    assert (
        "2"
        in client.batch_update(
            [{"memory_id": ids[0], "text": "Plays the bassoon"}, {"memory_id": ids[1], "metadata": {"hobby": True}}]
        )["message"]
    )
    assert client.get(ids[0])["memory"] == "Plays the bassoon"
    assert client.get(ids[1])["metadata"] == {"hobby": True}
    assert client.feedback(ids[0], feedback="POSITIVE", feedback_reason="accurate")["feedback"] == "POSITIVE"
    created = client.create_memory_export(schema='{"type": "object"}', filters={"user_id": "cli-batch"})
    deadline = time.monotonic() + 60
    export = client.get_memory_export(memory_export_id=created["id"])
    while export["status"] == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
        export = client.get_memory_export(memory_export_id=created["id"])
    assert export["status"] == "SUCCEEDED"
    assert sorted(m["memory"] for m in export["memories"]) == ["Collects stamps", "Plays the bassoon"]
    assert all(m["history"] for m in export["memories"])
    assert "2" in client.batch_delete([{"memory_id": i} for i in ids])["message"]
    assert client.get_all(filters={"user_id": "cli-batch"})["count"] == 0


def test_entities_delete_all_and_reset(client: MemoryClient, stack: Stack) -> None:
    settle(stack, client.add("I like jazz.", filters={"user_id": "cli-ent", "agent_id": "dj"}))
    settle(stack, client.add("I like opera.", filters={"user_id": "cli-gone"}))
    kinds = {(e["type"], e["name"]) for e in client.users()["results"]}
    assert {("user", "cli-ent"), ("agent", "dj"), ("user", "cli-gone")} <= kinds
    client.delete_all(filters={"user_id": "cli-gone"})  # sent as a query parameter holding a dict's repr
    assert client.get_all(filters={"user_id": "cli-gone"})["count"] == 0
    assert client.get_all(filters={"user_id": "cli-ent"})["count"] == 1
    client.delete_users(agent_id="dj")
    assert client.get_all(filters={"user_id": "cli-ent"})["count"] == 0
    settle(stack, client.add("I like techno.", filters={"user_id": "cli-last"}))
    client.reset()
    assert client.users()["results"] == []


def test_routes_not_served_yet_answer_501(client: MemoryClient) -> None:
    with pytest.raises(Exception, match="does not implement memory summaries"):
        client.get_summary(filters={"user_id": "x"})


async def export_when_done(aclient: AsyncMemoryClient, export_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    export = await aclient.get_memory_export(memory_export_id=export_id)
    while export["status"] == "PENDING" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        export = await aclient.get_memory_export(memory_export_id=export_id)
    return export  # type: ignore[no-any-return]


def test_async_client(stack: Stack) -> None:
    """Every method the sync tests call, through ``AsyncMemoryClient``, checking what it parses."""

    async def settled(response: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(settle, stack, response)

    async def scenario() -> None:
        async with AsyncMemoryClient(api_key=stack.api_key, host=stack.base_url) as aclient:
            assert aclient.org_id and aclient.project_id.startswith("proj_")
            job = await settled(
                await aclient.add("I teach chemistry. I live in Lund.", filters={"user_id": "async-1"},
                                  metadata={"src": "async"})
            )
            assert job["status"] == "SUCCEEDED"
            ids = {r["memory"]: r["id"] for r in job["results"]}
            assert sorted(ids) == ["Lives in Lund", "Teaches chemistry"]
            teaches = ids["Teaches chemistry"]
            found = await aclient.search("what is her job", filters={"user_id": "async-1"}, top_k=1)
            assert [(m["id"], m["metadata"]) for m in found["results"]] == [(teaches, {"src": "async"})]
            page = await aclient.get_all(filters={"user_id": "async-1"}, page=1, page_size=1)
            assert page["count"] == 2 and len(page["results"]) == 1 and page["next"] and page["previous"] is None
            one = await aclient.get(teaches)
            assert (one["id"], one["memory"], one["user_id"]) == (teaches, "Teaches chemistry", "async-1")

            await aclient.update(teaches, text="Teaches physics", metadata={"checked": True})
            assert (await aclient.get(teaches))["memory"] == "Teaches physics"
            assert [h["event"] for h in await aclient.history(teaches)] == ["ADD", "UPDATE"]
            assert "deleted" in (await aclient.delete(teaches))["message"]
            with pytest.raises(Exception, match="not found"):
                await aclient.get(teaches)
            assert [h["event"] for h in await aclient.history(teaches)] == ["ADD", "UPDATE", "DELETE"]

            job = await settled(await aclient.add("I play the oboe. I collect stamps.", filters={"user_id": "async-b"}))
            both = [r["id"] for r in job["results"]]
            updated = await aclient.batch_update(
                [{"memory_id": both[0], "text": "Plays the bassoon"}, {"memory_id": both[1], "metadata": {"k": 1}}]
            )
            assert "2" in updated["message"]
            assert (await aclient.get(both[0]))["memory"] == "Plays the bassoon"
            assert (await aclient.get(both[1]))["metadata"] == {"k": 1}
            given = await aclient.feedback(both[0], feedback="NEGATIVE", feedback_reason="wrong instrument")
            assert (given["memory_id"], given["feedback"], given["feedback_reason"]) == (
                both[0], "NEGATIVE", "wrong instrument"
            )
            created = await aclient.create_memory_export(schema='{"type": "object"}', filters={"user_id": "async-b"})
            assert created["status"] == "PENDING" and created["id"]
            export = await export_when_done(aclient, created["id"])
            assert export["status"] == "SUCCEEDED" and export["count"] == 2
            assert sorted(m["memory"] for m in export["memories"]) == ["Collects stamps", "Plays the bassoon"]
            assert [(f["memory_id"], f["feedback"]) for f in export["feedback"]] == [(both[0], "NEGATIVE")]
            assert "2" in (await aclient.batch_delete([{"memory_id": i} for i in both]))["message"]
            assert (await aclient.get_all(filters={"user_id": "async-b"}))["count"] == 0

            await settled(await aclient.add("I like jazz.", filters={"user_id": "async-ent", "agent_id": "async-dj"}))
            await settled(await aclient.add("I like opera.", filters={"user_id": "async-gone"}))
            kinds = {(e["type"], e["name"]) for e in (await aclient.users())["results"]}
            assert {("user", "async-ent"), ("agent", "async-dj"), ("user", "async-gone"), ("user", "async-1")} <= kinds
            assert "deleted" in (await aclient.delete_all(filters={"user_id": "async-gone"}))["message"]
            assert (await aclient.get_all(filters={"user_id": "async-gone"}))["count"] == 0
            assert (await aclient.get_all(filters={"user_id": "async-ent"}))["count"] == 1
            assert (await aclient.delete_users(agent_id="async-dj"))["message"] == "Entity deleted successfully."
            assert (await aclient.get_all(filters={"user_id": "async-ent"}))["count"] == 0
            await settled(await aclient.add("I like techno.", filters={"user_id": "async-last"}))
            assert "reset" in (await aclient.reset())["message"]
            assert (await aclient.users())["results"] == []
            assert (await aclient.get_all(filters={"user_id": "async-1"}))["count"] == 0

            with pytest.raises(Exception, match="does not implement memory summaries"):
                await aclient.get_summary(filters={"user_id": "x"})

    asyncio.run(scenario())


def test_bad_key_is_refused_at_construction(stack: Stack) -> None:
    with pytest.raises(ValueError, match="invalid or revoked API key"):
        MemoryClient(api_key="eng_not-a-key", host=stack.base_url)
