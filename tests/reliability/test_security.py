"""Security gaps the other suites leave: batch-size limits (413 with a message, on every batch route),
limits on the v3 add route too, a batch of another project, API keys stored only as digests, and Flower
behind authentication wherever it is deployed.

Covered elsewhere (not repeated here): every route without a key, with a bad key and with another
project's key and ids (tests/test_tenancy.py); request body, messages, characters and metadata limits
and the per-key rate limit (tests/test_api_validation.py); schemathesis over the whole API
(tests/test_openapi_fuzz.py); webhook SSRF guard and webhook cross-project access
(tests/test_webhooks_targets.py, tests/test_webhooks_api.py); secrets in logs, Flower, Redis and SQL
(tests/reliability/test_llm_faults.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from api.main import create_app
from engram.bootstrap import ensure_dev_project
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_client(tmp_path: Path, redis_url: str) -> Iterator[tuple[TestClient, Path]]:
    settings = make_settings(
        tmp_path, redis_url,
        api={"max_batch_conversations": 5, "max_messages_per_request": 3, "max_message_chars": 50,
             "max_body_bytes": 200_000},
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Token {ensure_dev_project(app.state.container).key}"
        yield client, tmp_path / "engram.db"


def conversation(i: int) -> dict[str, object]:
    return {"messages": f"I like tea number {i}.", "user_id": "u"}


def test_batch_sizes_past_the_limit_are_413_with_a_message(app_client: tuple[TestClient, Path]) -> None:
    client, _ = app_client
    too_many = [conversation(i) for i in range(6)]
    for response in (
        client.post("/v1/batches/", json=too_many),
        client.post("/v1/batches/", json={"conversations": too_many}),
        client.post("/v1/batches/", content="\n".join(json.dumps(c) for c in too_many).encode(),
                    headers={"content-type": "application/x-ndjson"}),
    ):
        assert response.status_code == 413, response.text
        assert "6 conversations in one batch; at most 5" in response.json()["error"]
    edits = [{"memory_id": f"m{i}", "text": "x"} for i in range(1001)]
    for method in ("PUT", "DELETE"):
        response = client.request(method, "/v1/batch/", json={"memories": edits})
        assert response.status_code == 400, (method, response.text)
        assert "1001 memories in one batch; at most 1000" in response.json()["error"]


def test_an_oversized_item_is_rejected_with_its_reason_and_the_rest_run(app_client: tuple[TestClient, Path]) -> None:
    client, _ = app_client
    items = [conversation(0), {"messages": "x" * 51, "user_id": "u"},
             {"messages": [{"role": "user", "content": "a"}] * 4, "user_id": "u"}]
    response = client.post("/v1/batches/", json=items)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 1
    assert [(r["index"], "at most" in r["error"]) for r in answer["rejected"]] == [(1, True), (2, True)]


def test_every_add_route_applies_the_limits(app_client: tuple[TestClient, Path]) -> None:
    client, _ = app_client
    for path in ("/v1/memories/", "/v3/memories/add/"):
        response = client.post(path, json={"messages": [{"role": "user", "content": "a"}] * 4, "user_id": "u"})
        assert response.status_code == 413 and "at most 3 per request" in response.text, (path, response.text)
        response = client.post(path, json={"messages": "x" * 51, "user_id": "u"})
        assert response.status_code == 413 and "at most 50" in response.text, (path, response.text)
    response = client.post("/v1/batches/", content=b"[" + b" " * 200_001 + b"]",
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than 200000 bytes" in response.text


def test_another_projects_batch_is_404(app_client: tuple[TestClient, Path]) -> None:
    client, _ = app_client
    batch = client.post("/v1/batches/", json=[conversation(1)]).json()
    c = client.app.state.container  # type: ignore[attr-defined]
    rival_key = c.tenancy.create_key(c.tenancy.create_project(c.tenancy.create_org("rival"), "rival")).key
    rival = {"Authorization": f"Token {rival_key}"}
    response = client.get(f"/v1/batches/{batch['batch_id']}/", headers=rival)
    assert response.status_code == 404 and batch["batch_id"] in response.text  # names the id, shows nothing
    assert "tea" not in response.text
    assert client.get(f"/v1/event/{batch['event_ids'][0]}/", headers=rival).status_code == 404
    assert client.get(f"/v1/batches/{batch['batch_id']}/").status_code == 200


def test_api_keys_are_stored_as_digests_only(app_client: tuple[TestClient, Path]) -> None:
    client, database = app_client
    c = client.app.state.container  # type: ignore[attr-defined]
    project = c.tenancy.create_project(c.tenancy.create_org("acme"), "acme")
    keys = [c.tenancy.create_key(project, f"k{i}").key for i in range(3)]
    keys.append(client.headers["Authorization"].split()[-1])
    assert client.get("/v1/ping/", headers={"X-API-Key": keys[0]}).status_code == 200
    conn = sqlite3.connect(database)
    dump = "\n".join(conn.iterdump())
    digests = {row[0] for row in conn.execute("SELECT key_hash FROM api_keys")}
    conn.close()
    for key in keys:
        assert key not in dump and key.removeprefix("eng_") not in dump
        assert hashlib.sha256(key.encode()).hexdigest() in digests


def test_flower_needs_a_password_wherever_it_is_deployed() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    # ${VAR:?message}: compose refuses to start without it, so Flower never runs open
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?.+\}", flower["environment"]["FLOWER_BASIC_AUTH"])
    procfile = (ROOT / "Procfile").read_text()
    [line] = [line for line in procfile.splitlines() if line.startswith("flower:")]
    assert "--address=127.0.0.1" in line  # on a single machine: loopback only
