"""Two projects side by side: every route, without a key, with a bad key, and with the other
project's key and ids. 401 / 404 (or an empty answer), never the other project's data."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.e2e
SECRET = "Keeps a diary in Esperanto"
OPEN_ROUTES = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("tenancy"), redis_url)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def other_key(stack: Stack) -> str:
    """A key of a second organisation's project, made with the real CLI."""
    org = stack.cli("orgs", "create", "rival").stdout.strip().split()[-1]
    project = stack.cli("projects", "create", "rival-project", "--org", org).stdout.strip().split()[-1]
    created = stack.cli("keys", "create", "--project", project).stdout
    return re.search(r"(eng_\S+)", created).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def victim(stack: Stack) -> dict[str, Any]:
    """Project A's memory, job and export ids."""
    job = stack.wait_job(stack.add({"messages": "I keep a diary in Esperanto.", "user_id": "victim",
                                    "agent_id": "victim-agent", "run_id": "victim-run"}))
    assert job["status"] == "SUCCEEDED" and job["results"][0]["memory"] == SECRET
    export = stack.client.post("/v1/exports/", json={"schema": "{}", "filters": {"user_id": "victim"}}).json()
    return {"memory_id": job["results"][0]["id"], "event_id": job["id"], "export_id": export["id"]}


def routes(stack: Stack) -> list[tuple[str, str]]:
    schema = stack.client.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops
            if path not in OPEN_ROUTES]


def fill(path: str, ids: dict[str, Any]) -> str:
    values = {"memory_id": ids["memory_id"], "event_id": ids["event_id"], "entity_type": "user",
              "entity_name": "victim", "entity_id": "victim", "job_id": "x", "org_id": "x", "project_id": "x"}
    return re.sub(r"{(\w+)}", lambda m: str(values.get(m.group(1), "x")), path)


def body_for(path: str, ids: dict[str, Any]) -> dict[str, Any]:
    scope = {"user_id": "victim"}
    return {
        "messages": "I like tea.", **scope, "filters": scope, "query": "diary", "text": "Hacked",
        "memories": [{"memory_id": ids["memory_id"], "text": "Hacked"}], "memory_id": ids["memory_id"],
        "memory_export_id": ids["export_id"], "schema": "{}",
    }


def test_every_route_needs_a_valid_key(stack: Stack, victim: dict[str, Any]) -> None:
    anonymous = httpx.Client(base_url=stack.base_url, timeout=30)
    for method, path in routes(stack):
        url = fill(path, victim)
        for headers in ({}, {"Authorization": "Token eng_wrong"}, {"X-API-Key": "nope"},
                        {"Authorization": "Basic dXNlcjpwYXNz"}):
            response = anonymous.request(method, url, headers=headers, json=body_for(path, victim))
            assert response.status_code == 401, (method, path, headers, response.text)
            assert SECRET not in response.text


def test_another_project_sees_nothing(stack: Stack, victim: dict[str, Any], other_key: str) -> None:
    rival = httpx.Client(base_url=stack.base_url, timeout=60, headers={"Authorization": f"Token {other_key}"})
    assert rival.get("/v1/ping/").json()["project_id"] != stack.client.get("/v1/ping/").json()["project_id"]
    for method, path in routes(stack):
        url = fill(path, victim)
        response = rival.request(method, url, json=body_for(path, victim),
                                 params={"user_id": "victim"} if method == "GET" else None)
        assert response.status_code < 500 or response.status_code == 501, (method, path, response.text)
        assert SECRET not in response.text, (method, path)
        assert victim["memory_id"] not in response.text or response.status_code == 404, (method, path)
        if "{memory_id}" in path or "{event_id}" in path:
            assert response.status_code == 404, (method, path, response.status_code)
    # and project A's memory is untouched by everything the rival tried
    mine = stack.client.get(f"/v1/memories/{victim['memory_id']}/")
    assert mine.status_code == 200 and mine.json()["memory"] == SECRET
    assert [h["event"] for h in stack.client.get(f"/v1/memories/{victim['memory_id']}/history/").json()] == ["ADD"]


def test_a_revoked_key_stops_working(stack: Stack) -> None:
    project = stack.client.get("/v1/ping/").json()["project_id"]
    created = stack.cli("keys", "create", "--project", project, "--name", "short-lived").stdout
    key_id, key = re.search(r"key id (\S+);.*?(eng_\S+)", created, re.S).groups()  # type: ignore[union-attr]
    client = httpx.Client(base_url=stack.base_url, timeout=30, headers={"X-API-Key": key})
    assert client.get("/v1/ping/").status_code == 200
    assert stack.cli("keys", "revoke", key_id).returncode == 0

    deadline = time.monotonic() + 15  # the API trusts a resolved key for at most 10 s
    while client.get("/v1/ping/").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert client.get("/v1/ping/").status_code == 401
