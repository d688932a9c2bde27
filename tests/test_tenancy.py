"""Two projects side by side: every route, without a key, with a bad key, and with the other
project's key and ids. 401 / 404 (or an empty answer), never the other project's data."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stack import Stack, free_port

pytestmark = pytest.mark.e2e
SECRET = "Keeps a diary in Esperanto"
OPEN_ROUTES = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Routes of the mem0ai client engram does not serve: 501 whatever the key (api/routers/unsupported.py).
NOT_SERVED = {
    "/v1/summary/": ["POST"],
    "/v2/entities/{entity_type}/{entity_id}/profile/": ["GET", "POST"],
    "/v2/profiles/jobs/": ["GET", "POST"],
    "/v2/profiles/jobs/{job_id}/": ["GET"],
    "/v2/profiles/settings/": ["GET", "POST"],
    "/api/v1/orgs/organizations/{org_id}/projects/{project_id}/": ["GET", "PATCH"],
}
# Routes that take one of project A's ids in the body rather than the path.
VICTIM_ID_IN_BODY = {("PUT", "/v1/batch/"), ("DELETE", "/v1/batch/"), ("POST", "/v1/feedback/"),
                     ("POST", "/v1/exports/get/")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    # Webhooks may reach loopback here only: the victim's webhook delivers to a closed local port.
    s = Stack(tmp_path_factory.mktemp("tenancy"), redis_url, ENGRAM_WEBHOOKS__ALLOWED_NETWORKS='["127.0.0.1/32"]')
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
    """Real ids of everything project A owns: memory, job, batch, export, webhook and its delivery, project, org."""
    ping = stack.client.get("/v1/ping/").json()
    project_id, org_id = ping["project_id"], ping["org_id"]
    hook = stack.client.post(f"/api/v1/webhooks/projects/{project_id}/",
                             json={"url": f"http://127.0.0.1:{free_port()}/hook", "event_types": ["memory_add"]})
    assert hook.status_code == 201, hook.text
    webhook_id = hook.json()["webhook_id"]
    job = stack.wait_job(stack.add({"messages": "I keep a diary in Esperanto.", "user_id": "victim",
                                    "agent_id": "victim-agent", "run_id": "victim-run"}))
    assert job["status"] == "SUCCEEDED" and job["results"][0]["memory"] == SECRET
    export = stack.client.post("/v1/exports/", json={"schema": "{}", "filters": {"user_id": "victim"}}).json()
    batch = stack.client.post("/v1/batches/", json=[{"messages": "I like green tea.", "user_id": "victim-batch"}])
    assert batch.status_code == 202, batch.text
    deliveries = stack.client.get(f"/api/v1/webhooks/{webhook_id}/deliveries/").json()
    assert deliveries["results"], deliveries  # the add's memory_add delivery
    return {"memory_id": job["results"][0]["id"], "event_id": job["id"], "export_id": export["id"],
            "batch_id": batch.json()["batch_id"], "webhook_id": webhook_id,
            "delivery_id": deliveries["results"][0]["delivery_id"], "project_id": project_id, "org_id": org_id}


def routes(stack: Stack) -> list[tuple[str, str]]:
    schema = stack.client.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops
            if path not in OPEN_ROUTES]


def fill(path: str, ids: dict[str, Any]) -> str:
    """The path with project A's real ids. A parameter this test does not know fails it: classify new routes."""
    values = {"entity_type": "user", "entity_name": "victim", "entity_id": "victim", "job_id": "x", **ids}
    return re.sub(r"{(\w+)}", lambda m: str(values[m.group(1)]), path)


def body_for(path: str, ids: dict[str, Any]) -> dict[str, Any]:
    scope = {"user_id": "victim"}
    return {
        "messages": "I like tea.", **scope, "filters": scope, "query": "diary", "text": "Hacked",
        "memories": [{"memory_id": ids["memory_id"], "text": "Hacked"}], "memory_id": ids["memory_id"],
        "memory_export_id": ids["export_id"], "schema": "{}", "url": "http://1.1.1.1/hook",
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
    assert rival.get("/v1/ping/").json()["project_id"] != victim["project_id"]
    every = routes(stack)
    unserved = [r for r in every if r[1] in NOT_SERVED]
    assert sorted(unserved) == sorted((m, p) for p, methods in NOT_SERVED.items() for m in methods)
    with_victim_id = [r for r in every if r not in unserved and ("{" in r[1] or r in VICTIM_ID_IN_BODY)]
    without_id = [r for r in every if r not in unserved and r not in with_victim_id]
    covered = " ".join(path for _, path in with_victim_id)
    for kind in ("memory_id", "event_id", "batch_id", "webhook_id", "delivery_id", "project_id", "entity_name"):
        assert "{" + kind + "}" in covered, kind  # each kind of id is tried
    # Routes with one of project A's ids first: nothing the rival writes below can then make them exist.
    for method, path in with_victim_id:
        response = rival.request(method, fill(path, victim), json=body_for(path, victim))
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert SECRET not in response.text, (method, path)
    for method, path in without_id:
        response = rival.request(method, fill(path, victim), json=body_for(path, victim),
                                 params={"user_id": "victim"} if method == "GET" else None)
        assert response.status_code < 500, (method, path, response.text)
        assert SECRET not in response.text and victim["memory_id"] not in response.text, (method, path)
    # Routes engram does not serve answer 501 to every key, the owner's included: no information either way.
    for method, path in unserved:
        for client in (rival, stack.client):
            response = client.request(method, fill(path, victim), json=body_for(path, victim))
            assert response.status_code == 501, (method, path, response.text)
            assert SECRET not in response.text
    # The ids are real: project A itself reads each of them.
    for method, path in with_victim_id:
        if method == "GET":
            assert stack.client.get(fill(path, victim)).status_code == 200, path
    # and project A's memory is untouched by everything the rival tried
    mine = stack.client.get(f"/v1/memories/{victim['memory_id']}/")
    assert mine.status_code == 200 and mine.json()["memory"] == SECRET
    assert [h["event"] for h in stack.client.get(f"/v1/memories/{victim['memory_id']}/history/").json()] == ["ADD"]
    assert stack.client.get(f"/api/v1/webhooks/{victim['webhook_id']}/").json()["url"] != "http://1.1.1.1/hook"


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
