"""The webhook routes and the event stream, in-process: Mem0's shapes, secrets shown once, the SSRF guard
at the door, project isolation, deliveries/attempts/replay. No worker: deliveries are made here."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.container import Container
from engram.bootstrap import ensure_dev_project
from engram.sql.jobs import utcnow
from engram.webhooks import outbox
from engram.webhooks.deliver import SendResult, deliver
from schemas.jobs import JobStatus, MemoryEvent
from tests.conftest import make_settings

BASE = "/api/v1/webhooks"


@pytest.fixture
def app_client(tmp_path: Path, redis_url: str) -> Iterator[tuple[TestClient, Container, str]]:
    app = create_app(make_settings(tmp_path, redis_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        key = ensure_dev_project(app.state.container)
        client.headers["Authorization"] = f"Token {key.key}"
        yield client, app.state.container, key.project_id


def make_webhook(client: TestClient, project: str, url: str = "http://1.1.1.1/hook", **extra: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/projects/{project}/", json={"url": url, "name": "logger", **extra})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_crud_in_mem0_shapes_and_the_secret_is_shown_once(app_client: tuple[TestClient, Container, str]) -> None:
    client, _, project = app_client
    created = make_webhook(client, project, event_types=["memory:add", "memory_update", "job_failed"])
    assert created["secret"].startswith("whsec_") and created["project"] == project and created["is_active"]
    assert created["event_types"] == ["memory_add", "memory_update", "job_failed"]
    listed = client.get(f"{BASE}/projects/{project}/").json()
    assert [w["webhook_id"] for w in listed] == [created["webhook_id"]]
    assert listed[0]["secret"] is None and listed[0]["secret_hint"] == f"whsec_…{created['secret'][-4:]}"
    assert created["secret"] not in json.dumps(listed)

    hook = f"{BASE}/{created['webhook_id']}/"
    changed = client.put(hook, json={"name": "renamed", "event_types": ["memory_delete"], "is_active": False})
    assert changed.status_code == 200 and changed.json()["message"] == "Webhook updated successfully"
    assert (changed.json()["name"], changed.json()["event_types"], changed.json()["is_active"]) == (
        "renamed", ["memory_delete"], False
    )
    assert changed.json()["secret"] is None

    rotated = client.post(hook + "rotate-secret/", json={"grace_seconds": 60}).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    assert client.delete(hook).json() == {"message": "Webhook deleted successfully"}
    assert client.get(hook).status_code == 404 and client.delete(hook).status_code == 404


def test_bad_input_is_a_clear_4xx(app_client: tuple[TestClient, Container, str]) -> None:
    client, _, project = app_client
    bad = client.post(f"{BASE}/projects/{project}/", json={"url": "http://1.1.1.1/", "event_types": ["memory_eat"]})
    assert bad.status_code == 422 and "unknown event types" in bad.text
    assert client.post(f"{BASE}/projects/{project}/", json={"url": "ftp://1.1.1.1/"}).status_code == 400
    assert client.post(f"{BASE}/projects/{project}/", json={"name": "no url"}).status_code == 422


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
     "http://10.0.0.5/hook", "http://[::1]/hook", "http://192.168.0.10/"],
)
def test_private_targets_are_refused_by_default(app_client: tuple[TestClient, Container, str], url: str) -> None:
    client, _, project = app_client
    response = client.post(f"{BASE}/projects/{project}/", json={"url": url})
    assert response.status_code == 400 and "may not reach it" in response.text
    hook = make_webhook(client, project)
    assert client.put(f"{BASE}/{hook['webhook_id']}/", json={"url": url}).status_code == 400


def test_another_project_sees_nothing(app_client: tuple[TestClient, Container, str]) -> None:
    client, c, project = app_client
    hook = make_webhook(client, project)
    rival_project = c.tenancy.create_project(c.tenancy.create_org("rival"), "rival")
    rival = {"Authorization": f"Token {c.tenancy.create_key(rival_project).key}"}
    assert client.get(f"{BASE}/projects/{project}/", headers=rival).status_code == 404
    assert client.post(f"{BASE}/projects/{project}/", headers=rival, json={"url": "http://1.1.1.1/"}).status_code == 404
    assert client.get(f"{BASE}/projects/{rival_project}/", headers=rival).json() == []
    # ownership is settled before the body is read: a bad body from another project is still a 404
    assert client.post(f"{BASE}/projects/{project}/", headers=rival, json={"name": 1}).status_code == 404
    assert client.put(f"{BASE}/{hook['webhook_id']}/", headers=rival, json={"is_active": "x"}).status_code == 404
    now = utcnow()
    with c.engine.begin() as conn:
        [(delivery_id, _)] = outbox.write(conn, project, "job-1", outbox.memory_events(
            [MemoryEvent(id="m1", memory="Lives in Lisbon", event="ADD")], job_id="job-1", project_id=project,
            scope={"user_id": "u"}, at=now), now)
    queued = c.webhooks.delivery(delivery_id)
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "rotate-secret/"), ("GET", "deliveries/"),
                         ("POST", "replay-failed/"), ("GET", f"deliveries/{delivery_id}/attempts/"),
                         ("POST", f"deliveries/{delivery_id}/replay/")):
        response = client.request(method, f"{BASE}/{hook['webhook_id']}/{path}", headers=rival, json={})
        assert response.status_code == 404, (method, path, response.text)
        assert hook["secret"] not in response.text and "Lisbon" not in response.text
    # nothing the rival sent changed anything: same webhook, same secret, the delivery not replayed
    assert client.get(f"{BASE}/{hook['webhook_id']}/").json()["name"] == "logger"
    after = c.webhooks.get(hook["webhook_id"])
    assert after is not None and after.secret == hook["secret"] and after.previous_secret is None
    assert queued is not None and c.webhooks.delivery(delivery_id) == queued  # not replayed (nor touched)


def test_deliveries_attempts_and_replay(app_client: tuple[TestClient, Container, str]) -> None:
    client, c, project = app_client
    hook = make_webhook(client, project, event_types=["memory_add"])
    events = [MemoryEvent(id="m1", memory="Lives in Lisbon", event="ADD")]
    now = utcnow()
    with c.engine.begin() as conn:
        [(delivery_id, token)] = outbox.write(
            conn, project, "job-1",
            outbox.memory_events(events, job_id="job-1", project_id=project, scope={"user_id": "u"}, at=now), now,
        )
    c.settings.webhooks.retry_schedule_seconds = [0.01]

    def send_400(*_: Any) -> SendResult:
        return SendResult(400, response_body="no thanks")

    deliver(c.webhooks, c.settings.webhooks, delivery_id, token, send=send_400, resolve=lambda h, p: ["1.1.1.1"],
            rng=random.Random(0))
    base = f"{BASE}/{hook['webhook_id']}/deliveries/"
    page = client.get(base, params={"status": "FAILED"}).json()
    assert page["count"] == 1
    [row] = page["results"]
    assert (row["delivery_id"], row["status"], row["attempts"], row["last_status_code"]) == (delivery_id, "FAILED", 1,
                                                                                             400)
    assert row["payload"]["event_details"] == {"id": "m1", "data": {"memory": "Lives in Lisbon"}, "event": "ADD"}
    assert client.get(base, params={"status": "PENDING"}).json() == {"count": 0, "results": []}
    [attempt] = client.get(f"{base}{delivery_id}/attempts/").json()
    assert (attempt["outcome"], attempt["status_code"], attempt["response_body"]) == ("failed", 400, "no thanks")
    assert client.get(f"{base}nope/attempts/").status_code == 404

    replayed = client.post(f"{base}{delivery_id}/replay/")
    assert replayed.status_code == 202 and replayed.json()["delivery_ids"] == [delivery_id]
    assert client.get(base).json()["results"][0]["status"] == "PENDING"
    assert client.post(f"{BASE}/{hook['webhook_id']}/replay-failed/").json()["delivery_ids"] == []
    client.put(f"{BASE}/{hook['webhook_id']}/", json={"is_active": False})
    assert client.post(f"{BASE}/{hook['webhook_id']}/replay-failed/").status_code == 409


def test_event_stream_of_a_finished_job(app_client: tuple[TestClient, Container, str]) -> None:
    client, c, project = app_client
    c.jobs.create("job-s", project, {"messages": "x", "user_id": "u"}, {"user_id": "u"})
    with c.engine.begin() as conn:
        c.jobs.record_events("job-s", project, [MemoryEvent(id="m1", memory="Likes tea", event="ADD")], conn)
    c.jobs.finish("job-s", JobStatus.SUCCEEDED)
    with client.stream("GET", "/v1/event/job-s/stream") as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    blocks = [b for b in text.split("\n\n") if b.strip()]
    kinds = [next(line[7:] for line in b.splitlines() if line.startswith("event: ")) for b in blocks]
    assert kinds == ["stage", "memory", "end"]
    memory = json.loads(blocks[1].splitlines()[-1][6:])
    assert memory == {"id": "m1", "memory": "Likes tea", "event": "ADD", "previous_memory": None}
    assert client.get("/v1/event/nope/stream").status_code == 404
