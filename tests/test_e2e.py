"""End to end: a real API process, a real Celery worker process (not eager), real Redis, SQLite,
LanceDB and the real embedder. POST → poll → SUCCEEDED → search.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("e2e"), redis_url)
    try:
        yield s.start()
    finally:
        s.stop()


def test_add_poll_search(stack: Stack) -> None:
    event_id = stack.add(
        {
            "messages": [
                {"role": "user", "content": "My name is Ana. I live in Paris."},
                {"role": "assistant", "content": "Hello Ana!"},
            ],
            "user_id": "ana",
            "metadata": {"channel": "web"},
        }
    )
    job = stack.wait_job(event_id)
    assert job["status"] == "SUCCEEDED", job
    assert sorted((r["event"], r["memory"]) for r in job["results"]) == [
        ("ADD", "Lives in Paris"),
        ("ADD", "Name is Ana"),
    ]
    hits = stack.client.post(
        "/v1/memories/search/", json={"query": "where does she live", "user_id": "ana", "limit": 1}
    ).json()["results"]
    assert hits[0]["memory"] == "Lives in Paris"
    assert hits[0]["metadata"] == {"channel": "web"} and hits[0]["user_id"] == "ana"
    assert stack.client.post("/v1/memories/search/", json={"query": "Paris", "user_id": "zoe"}).json()["results"] == []


def test_the_stores_upkeep_runs_as_a_task_on_the_worker(stack: Stack) -> None:
    # The pipeline's writes ask for upkeep (workers/upkeep.py) instead of loading pylance themselves.
    job = stack.wait_job(stack.add({"messages": [{"role": "user", "content": "I keep bees."}], "user_id": "upk"}))
    assert job["status"] == "SUCCEEDED", job
    deadline = time.monotonic() + 30
    while not re.search(r"Task engram\.vector_upkeep\[[^]]+\] succeeded", stack.log("worker")):
        assert time.monotonic() < deadline, "no engram.vector_upkeep task ran:\n" + stack.log("worker")[-3000:]
        time.sleep(0.2)


def test_infer_false_stores_each_message(stack: Stack) -> None:
    job = stack.wait_job(
        stack.add(
            {
                "messages": [
                    {"role": "user", "content": "raw note one"},
                    {"role": "assistant", "content": "raw reply"},
                ],
                "user_id": "raw",
                "infer": False,
            }
        )
    )
    assert job["status"] == "SUCCEEDED"
    stored = sorted((m["memory"], m["metadata"]["role"]) for m in stack.memories(user_id="raw"))
    assert stored == [("raw note one", "user"), ("raw reply", "assistant")]


def test_contradiction_updates_and_history_shows_it(stack: Stack) -> None:
    first = stack.wait_job(stack.add({"messages": "I work at a bakery.", "user_id": "ben"}))
    memory_id = first["results"][0]["id"]
    second = stack.wait_job(stack.add({"messages": "I work at a hospital now.", "user_id": "ben"}))
    assert [(r["event"], r["id"], r["previous_memory"]) for r in second["results"]] == [
        ("UPDATE", memory_id, "Works at a bakery")
    ]
    history = stack.client.get(f"/v1/memories/{memory_id}/history/").json()
    assert [(h["event"], h["old_memory"], h["new_memory"]) for h in history] == [
        ("ADD", None, "Works at a bakery"),
        ("UPDATE", "Works at a bakery", "Works at a hospital now"),
    ]
    assert [m["memory"] for m in stack.memories(user_id="ben")] == ["Works at a hospital now"]


def test_sync_mode_returns_results(stack: Stack) -> None:
    response = stack.client.post(
        "/v1/memories/", json={"messages": "I collect vinyl records.", "user_id": "sy", "async_mode": False}
    )
    assert response.status_code == 200, response.text
    assert [(r["event"], r["memory"]) for r in response.json()["results"]] == [("ADD", "Collects vinyl records")]


def test_concurrent_adds_of_one_fact_make_one_memory(stack: Stack) -> None:
    body = {"messages": "I am allergic to penicillin.", "user_id": "race"}
    with ThreadPoolExecutor(20) as pool:
        event_ids = list(pool.map(lambda _: stack.add(body), range(20)))
    jobs = [stack.wait_job(e) for e in event_ids]
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
    assert sum(len(j["results"]) for j in jobs) == 1  # one ADD, nineteen NONE
    assert [m["memory"] for m in stack.memories(user_id="race")] == ["Is allergic to penicillin"]


def test_edit_and_delete_through_the_api(stack: Stack) -> None:
    job = stack.wait_job(stack.add({"messages": "I drive a red car.", "user_id": "ed"}))
    memory_id = job["results"][0]["id"]
    updated = stack.client.put(f"/v1/memories/{memory_id}/", json={"text": "Drives a blue car"})
    assert updated.status_code == 200 and updated.json()["memory"] == "Drives a blue car"
    assert stack.client.get(f"/v1/memories/{memory_id}/").json()["memory"] == "Drives a blue car"
    assert stack.client.delete(f"/v1/memories/{memory_id}/").status_code == 200
    assert stack.client.get(f"/v1/memories/{memory_id}/").status_code == 404
    events = [h["event"] for h in stack.client.get(f"/v1/memories/{memory_id}/history/").json()]
    assert events == ["ADD", "UPDATE", "DELETE"]


def test_delete_all_for_a_scope(stack: Stack) -> None:
    stack.wait_job(stack.add({"messages": "I like tea. I play golf.", "user_id": "wipe"}))
    stack.wait_job(stack.add({"messages": "I like coffee.", "user_id": "keep"}))
    assert len(stack.memories(user_id="wipe")) == 2
    assert stack.client.delete("/v1/memories/", params={"user_id": "wipe"}).status_code == 200
    assert stack.memories(user_id="wipe") == []
    assert len(stack.memories(user_id="keep")) == 1
    assert stack.client.delete("/v1/memories/").status_code == 400  # never wipe everything by accident


def test_workdir_is_isolated(stack: Stack) -> None:
    assert Path(stack.env["ENGRAM_VECTOR_STORE__PATH"]).is_dir()


STAGE_TASKS = ("engram.extract", "engram.embed", "engram.reconcile", "engram.notify")


def _received(stack: Stack) -> dict[str, int]:
    """How many messages of each stage task the worker has received so far (Celery's INFO log)."""
    log = (stack.workdir / "worker.log").read_text(errors="replace")
    return {task: len(re.findall(rf"Task {re.escape(task)}\[[^]]+\] received", log)) for task in STAGE_TASKS}


def _one_job_and_its_tasks(stack: Stack, user_id: str) -> dict[str, int]:
    before = _received(stack)
    job = stack.wait_job(stack.add({"messages": "I grow tomatoes. I sail on weekends.", "user_id": user_id}))
    assert job["status"] == "SUCCEEDED", job
    assert sorted(r["memory"] for r in job["results"]) == ["Grows tomatoes", "Sails on weekends"]
    assert job["stage"] == "notified" and job["error"] is None
    return {task: count - before[task] for task, count in _received(stack).items()}


def test_embed_and_notify_run_inside_the_extract_and_reconcile_tasks(stack: Stack) -> None:
    # The default (pipeline.separate_stage_tasks off): two broker hops per job, every stage still done in order.
    assert _one_job_and_its_tasks(stack, "in-process") == {
        "engram.extract": 1, "engram.embed": 0, "engram.reconcile": 1, "engram.notify": 0}


def test_separate_stage_tasks_run_every_stage_as_its_own_task(tmp_path: Path, redis_url: str) -> None:
    # What an operator who wants Flower to list every stage turns on.
    s = Stack(tmp_path, redis_url, ENGRAM_PIPELINE__SEPARATE_STAGE_TASKS="true")
    try:
        s.start()
        assert _one_job_and_its_tasks(s, "separate") == dict.fromkeys(STAGE_TASKS, 1)
    finally:
        s.stop()


def test_redelivered_messages_change_nothing(stack: Stack) -> None:
    """At-least-once delivery: every stage of one job delivered three times, one set of memories."""
    from config.settings import Settings
    from workers.celery_app import producer

    sender = producer(
        Settings(redis={"url": stack.env["ENGRAM_REDIS__URL"], "key_prefix": stack.env["ENGRAM_REDIS__KEY_PREFIX"]})
    )
    event_id = stack.add({"messages": "I speak Finnish. I own a kayak.", "user_id": "dup"})
    for stage in STAGE_TASKS * 2:
        sender.send_task(stage, args=[event_id])
    job = stack.wait_job(event_id)
    assert job["status"] == "SUCCEEDED"
    assert sorted(r["memory"] for r in job["results"]) == ["Owns a kayak", "Speaks Finnish"]
    sender.close()
    memories = stack.memories(user_id="dup")
    assert sorted(m["memory"] for m in memories) == ["Owns a kayak", "Speaks Finnish"]
    for memory in memories:
        assert [h["event"] for h in stack.client.get(f"/v1/memories/{memory['id']}/history/").json()] == ["ADD"]
