"""High-volume ingest: batches (JSON and NDJSON), idempotency keys, the resumable CLI, backpressure."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("batch"), redis_url)
    try:
        yield s.start()
    finally:
        s.stop()


def wait_batch(stack: Stack, batch_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = stack.client.get(f"/v1/batches/{batch_id}/").json()
        if status["done"]:
            return status  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise TimeoutError(stack.log("worker"))


def test_batch_with_a_bad_item(stack: Stack) -> None:
    items = [
        {"messages": "I sail on weekends.", "user_id": "b1", "idempotency_key": "k1"},
        {"messages": "I bake sourdough.", "user_id": "b2", "idempotency_key": "k2"},
        {"messages": "no scope here"},
        {"messages": [{"role": "user", "content": "I fence épée."}], "user_id": "b3"},
    ]
    answer = stack.client.post("/v1/batches/", json=items).json()
    assert answer["accepted"] == 3 and answer["duplicates"] == 0
    assert [r["index"] for r in answer["rejected"]] == [2]
    assert "user_id, agent_id or run_id" in answer["rejected"][0]["error"]
    assert answer["event_ids"][2] is None and all(answer["event_ids"][i] for i in (0, 1, 3))
    status = wait_batch(stack, answer["batch_id"])
    assert status["counts"]["SUCCEEDED"] == 3 and status["failed"] == [] and status["total"] == 4
    assert status["events"] == {"ADD": 3}
    assert [m["memory"] for m in stack.memories(user_id="b3")] == ["Fences épée"]

    again = stack.client.post("/v1/batches/", json={"conversations": items[:2]}).json()
    assert again["accepted"] == 0 and again["duplicates"] == 2
    assert again["event_ids"] == answer["event_ids"][:2]
    assert len(stack.memories(user_id="b1")) == 1


def test_ndjson_upload(stack: Stack) -> None:
    lines = "\n".join(json.dumps({"messages": f"I own {n} bicycles.", "user_id": f"nd{n}"}) for n in range(3))
    response = stack.client.post("/v1/batches/", content=lines.encode(),
                                 headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 202, response.text
    assert wait_batch(stack, response.json()["batch_id"])["counts"]["SUCCEEDED"] == 3
    bad = stack.client.post("/v1/batches/", content=b"{oops", headers={"content-type": "application/x-ndjson"})
    assert bad.status_code == 400 and "NDJSON" in bad.text


def test_idempotency_key_header_on_add(stack: Stack) -> None:
    body = {"messages": "I write haiku.", "user_id": "idem"}
    first = stack.client.post("/v1/memories/", json=body, headers={"Idempotency-Key": "same"}).json()
    second = stack.client.post("/v3/memories/add/", json=body, headers={"Idempotency-Key": "same"}).json()
    assert first["event_id"] == second["event_id"]
    stack.wait_job(first["event_id"])
    assert len(stack.memories(user_id="idem")) == 1


def test_cli_ingest_resumes_without_duplicates(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "conversations.jsonl"
    path.write_text("\n".join(json.dumps({"messages": f"I planted {n} trees.", "user_id": f"cli{n % 3}"})
                              for n in range(12)) + "\n")
    first = stack.cli("ingest", str(path), "--batch-size", "5")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "12 succeeded, 0 failed; memories: 12 added, 0 updated, 0 deleted" in " ".join(first.stdout.split())
    counts = {u: len(stack.memories(user_id=u)) for u in ("cli0", "cli1", "cli2")}
    assert sum(counts.values()) == 12
    again = stack.cli("ingest", str(path), "--batch-size", "5")  # an interrupted run started again
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already ingested" in again.stdout
    assert {u: len(stack.memories(user_id=u)) for u in ("cli0", "cli1", "cli2")} == counts


@pytest.fixture(scope="module")
def stalled(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """An API with no worker behind it and a queue limit of 3."""
    s = Stack(tmp_path_factory.mktemp("stalled"), redis_url, ENGRAM_API__MAX_QUEUE_DEPTH="3")
    try:
        s.start_api()
        s.api_key = s.new_key()
        s.client.headers["Authorization"] = f"Token {s.api_key}"
        yield s
    finally:
        s.stop()


def test_backpressure_answers_429(stalled: Stack) -> None:
    body = {"messages": "I like kites.", "user_id": "bp"}
    statuses = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = stalled.client.post("/v1/memories/", json=body)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) > 0 and "jobs are waiting" in response.json()["error"]
            break
        time.sleep(0.3)  # the API reads the queue depth at most once a second
    assert statuses[-1] == 429 and statuses.count(202) >= 3
    batch = stalled.client.post("/v1/batches/", json=[body, body])
    assert batch.status_code == 429
    assert isinstance(httpx.codes(batch.status_code), httpx.codes)
