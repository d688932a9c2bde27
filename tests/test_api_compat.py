"""Mem0-compatible API details, over HTTP against a real stack (API and worker processes, Redis, SQLite,
LanceDB, the real embedder; the LLM is the OpenAI-compatible stub on loopback, so prompts can be read):
filter errors, the three ways to send a key, the v2 routes, the add options, stored feedback."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from engram.categories import DEFAULT_CATEGORIES
from engram.sql import tables
from tests.llm_stub import LLMStub, litellm_env
from tests.stack import Stack

pytestmark = pytest.mark.e2e
PAST_UNIX = 1_650_000_000  # 2022-04-15T05:20:00Z
BAD_FILTERS = [  # (filters, the name the 400 must give)
    ({"AND": [{"user_id": "compat-f"}, {"colour": "red"}]}, "colour"),
    ({"user_id": {"like": "compat-f"}}, "like"),
    ({"OR": [{"user_id": "compat-f"}, {"NOT": {"shoe_size": 42}}]}, "shoe_size"),
    ({"user_id": "compat-f", "created_at": {"between": ["2020-01-01", "2030-01-01"]}}, "between"),
]


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStub]:
    with LLMStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, llm: LLMStub) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("api-compat"),
        redis_url,
        **litellm_env(llm, timeout_seconds=5),
    )
    try:
        yield s.start()
    finally:
        s.stop()


def add(stack: Stack, body: dict[str, Any], path: str = "/v1/memories/") -> dict[str, Any]:
    response = stack.client.post(path, json=body)
    assert response.status_code == 202, response.text
    job = stack.wait_job(response.json()["event_id"])
    assert job["status"] == "SUCCEEDED", job
    return job


def error_text(response: httpx.Response) -> str:
    body = response.json()
    return str(body.get("error") or body.get("detail"))


def test_unknown_filter_keys_and_operators_are_400_naming_them(stack: Stack) -> None:
    kept = add(stack, {"messages": "I collect fossils.", "user_id": "compat-f"})["results"][0]["id"]
    for filters, name in BAD_FILTERS:
        calls = [
            *(("POST", f"/{v}/memories/search/", {"query": "fossils", "filters": filters}) for v in ("v1", "v2", "v3")),
            *(("POST", f"/{v}/memories/", {"filters": filters}) for v in ("v2", "v3")),
        ]
        for method, path, body in calls:
            response = stack.client.request(method, path, json=body)
            assert response.status_code == 400, (path, filters, response.text)
            assert name in error_text(response), (path, response.text)
        response = stack.client.delete("/v1/memories/", params={"filters": json.dumps(filters)})
        assert response.status_code == 400 and name in error_text(response), (filters, response.text)
    assert stack.client.get(f"/v1/memories/{kept}/").status_code == 200  # no bad delete_all removed anything
    good = stack.client.post("/v2/memories/", json={"filters": {"AND": [{"user_id": "compat-f"}]}})
    assert good.status_code == 200 and [m["id"] for m in good.json()["results"]] == [kept]


def test_bearer_and_x_api_key_authenticate_like_token(stack: Stack) -> None:
    project = stack.client.get("/v1/ping/").json()["project_id"]
    add(stack, {"messages": "I brew kombucha.", "user_id": "compat-auth"})
    for headers in ({"Authorization": f"Bearer {stack.api_key}"}, {"X-API-Key": stack.api_key},
                    {"Authorization": f"Token {stack.api_key}"}):
        client = httpx.Client(base_url=stack.base_url, timeout=30, headers=headers)
        assert client.get("/v1/ping/").json()["project_id"] == project, headers
        listed = client.post("/v2/memories/", json={"filters": {"user_id": "compat-auth"}})
        assert listed.status_code == 200 and [m["memory"] for m in listed.json()["results"]] == ["Brews kombucha"]
    for headers in ({"Authorization": "Bearer eng_wrong"}, {"X-API-Key": "eng_wrong"}, {"Authorization": "Bearer"}):
        response = httpx.get(f"{stack.base_url}/v1/ping/", headers=headers)
        assert response.status_code == 401, headers


def test_v2_get_all_and_search(stack: Stack) -> None:
    add(stack, {"messages": "I live in Tromsø. I love kayaking.", "user_id": "compat-v2", "metadata": {"src": "v2"}})
    page = stack.client.post("/v2/memories/", json={"filters": {"user_id": "compat-v2"}, "page": 1, "page_size": 1})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["count"] == 2 and len(body["results"]) == 1 and body["next"] and body["previous"] is None
    second = stack.client.post("/v2/memories/", params={"page": 2, "page_size": 1},
                               json={"filters": {"user_id": "compat-v2"}}).json()
    assert second["next"] is None and second["previous"]
    assert {body["results"][0]["memory"], second["results"][0]["memory"]} == {"Lives in Tromsø", "Loves kayaking"}
    found = stack.client.post("/v2/memories/search/", json={
        "query": "which city does she live in", "filters": {"AND": [{"user_id": "compat-v2"},
                                                                   {"metadata": {"src": "v2"}}]}, "top_k": 1})
    assert found.status_code == 200, found.text
    hits = found.json()["results"]
    assert [m["memory"] for m in hits] == ["Lives in Tromsø"] and 0 < hits[0]["score"] <= 1
    assert hits[0]["user_id"] == "compat-v2" and hits[0]["metadata"] == {"src": "v2"}
    other = stack.client.post("/v2/memories/search/", json={"query": "city", "filters": {"user_id": "nobody"}})
    assert other.status_code == 200 and other.json()["results"] == []


def test_custom_categories_instructions_and_timestamp_on_add(stack: Stack, llm: LLMStub) -> None:
    custom = [{"gardening": "plants, gardens, growing vegetables and flowers"}, {"pets": "dogs, cats, pet animals"}]
    llm.reset()
    job = add(stack, {"messages": "I grow tomatoes on my balcony.", "filters": {"user_id": "compat-add"},
                      "custom_categories": custom, "custom_instructions": "Only keep facts about gardening.",
                      "timestamp": PAST_UNIX}, path="/v3/memories/add/")
    memory = stack.client.get(f"/v1/memories/{job['results'][0]['id']}/").json()
    assert memory["categories"] == ["gardening"]  # from the custom set, not Mem0's defaults
    assert datetime.fromisoformat(memory["created_at"]) == datetime.fromtimestamp(PAST_UNIX, UTC)
    extraction = [r["messages"][0]["content"] for r in llm.requests
                  if r["messages"][-1]["content"].startswith("Conversation:")]
    assert len(extraction) == 1 and extraction[0].endswith("Additional instructions:\nOnly keep facts about gardening.")

    plain = add(stack, {"messages": "I play the violin in an orchestra.", "user_id": "compat-plain"})
    default = stack.client.get(f"/v1/memories/{plain['results'][0]['id']}/").json()
    assert "music" in default["categories"] and set(default["categories"]) <= set(DEFAULT_CATEGORIES)
    created = datetime.fromisoformat(default["created_at"])
    assert abs((datetime.now(UTC) - created).total_seconds()) < 3600  # now, not the earlier request's timestamp


def test_feedback_is_stored(stack: Stack) -> None:
    memory_id = add(stack, {"messages": "I speak Welsh.", "user_id": "compat-fb"})["results"][0]["id"]
    given = stack.client.post("/v1/feedback/", json={"memory_id": memory_id, "feedback": "VERY_NEGATIVE",
                                                     "feedback_reason": "I only speak a little"})
    assert given.status_code == 200, given.text
    assert stack.client.post("/v1/feedback/", json={"memory_id": "no-such-memory", "feedback": "POSITIVE"}
                             ).status_code == 404
    assert stack.client.post("/v1/feedback/", json={"memory_id": memory_id, "feedback": "MEH"}).status_code == 422
    project = stack.client.get("/v1/ping/").json()["project_id"]
    engine = sa.create_engine(stack.env["ENGRAM_SQL__URL"])
    try:
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(tables.feedback)).mappings()]
    finally:
        engine.dispose()
    mine = [r for r in rows if r["memory_id"] == memory_id]
    assert [(r["id"], r["project_id"], r["feedback"], r["feedback_reason"]) for r in mine] == [
        (given.json()["id"], project, "VERY_NEGATIVE", "I only speak a little")
    ]
    assert not [r for r in rows if r["memory_id"] == "no-such-memory"]
    assert re.fullmatch(r"[0-9a-f-]{36}", given.json()["id"])
    assert time.time() - datetime.fromisoformat(str(mine[0]["created_at"])).replace(tzinfo=UTC).timestamp() < 3600
