"""Bad input gets a clear 4xx with a message, never a 500. Runs the real app in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from engram.bootstrap import ensure_dev_project
from tests.conftest import make_settings


@pytest.fixture
def client(tmp_path: Path, redis_url: str) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        redis_url,
        api={"max_messages_per_request": 3, "max_message_chars": 50, "max_metadata_bytes": 64, "max_body_bytes": 4000},
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Token {ensure_dev_project(app.state.container).key}"
        yield c


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"messages": "hi"}, 422, "one of user_id, agent_id or run_id is required"),
        ({"messages": [], "user_id": "u"}, 422, "at least 1"),
        ({"messages": [{"role": "robot", "content": "x"}], "user_id": "u"}, 422, "'user', 'assistant'"),
        ({"messages": [{"role": "user", "content": "   "}], "user_id": "u"}, 422, "blank"),
        ({"messages": [{"role": "user"}], "user_id": "u"}, 422, "content"),
        ({"messages": "hi", "user_id": ""}, 422, "at least 1 character"),
        ({"messages": ["a"] * 4, "user_id": "u"}, 422, "valid dictionary"),
        ({"messages": [{"role": "user", "content": "x"}] * 4, "user_id": "u"}, 413, "at most 3 per request"),
        ({"messages": "x" * 51, "user_id": "u"}, 413, "at most 50"),
        ({"messages": "x", "user_id": "u", "metadata": {"k": "v" * 100}}, 413, "metadata"),
    ],
)
def test_bad_add_bodies(client: TestClient, body: dict, status: int, needle: str) -> None:
    response = client.post("/v1/memories/", json=body)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_malformed_json_and_oversized_body(client: TestClient) -> None:
    response = client.post("/v1/memories/", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.text
    response = client.post("/v1/memories/", content=b"x" * 5000, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than 4000 bytes" in response.text


def test_unknown_ids_are_404(client: TestClient) -> None:
    for path in ("/v1/event/nope/", "/v1/memories/nope/", "/v1/memories/nope/history/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["error"]
    assert client.put("/v1/memories/nope/", json={"text": "x"}).status_code == 404
    assert client.delete("/v1/memories/nope/").status_code == 404


def test_search_and_list_need_a_scope(client: TestClient) -> None:
    assert client.post("/v1/memories/search/", json={"query": "x"}).status_code == 400
    assert client.post("/v1/memories/search/", json={"user_id": "u"}).status_code == 422
    assert client.post("/v1/memories/search/", json={"query": "x", "user_id": "u", "limit": 0}).status_code == 422
    assert client.get("/v1/memories/").status_code == 400
    assert client.post("/v3/memories/search/", json={"query": "x"}).status_code == 400
    assert client.post("/v3/memories/", json={}).status_code == 400
    assert client.put("/v1/memories/x/", json={}).status_code == 422


def test_health_reports_each_dependency(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body == {"status": "ok", "checks": {"redis": "ok", "sql": "ok", "vector_store": "ok"}}


def test_broker_down_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, "redis://127.0.0.1:1/0", sql={"url": f"sqlite:///{tmp_path / 'e.db'}", "auto_migrate": False}
    )
    from engram.sql.engine import make_engine
    from engram.sql.migrate import upgrade

    upgrade(make_engine(settings.sql.url))
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Token {ensure_dev_project(app.state.container).key}"
        response = c.post("/v1/memories/", json={"messages": "I like tea", "user_id": "u"})
        assert response.status_code == 503 and response.headers["retry-after"]
        job = app.state.container.jobs  # the job that could not be queued is FAILED, not left to run later
        with job.engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT status FROM jobs")).scalars().all() == ["FAILED"]
        assert c.get("/health").json()["checks"]["redis"].startswith("error")


def test_per_key_rate_limit(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, redis_url, api={"requests_per_second_per_key": 0.5, "request_burst_per_key": 3})
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Token {ensure_dev_project(app.state.container).key}"
        statuses = [c.get("/v1/ping/").status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
        limited = c.get("/v1/ping/")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "too many requests" in limited.json()["error"]
        other = ensure_dev_project(app.state.container).key  # another key has its own budget
        assert c.get("/v1/ping/", headers={"Authorization": f"Token {other}"}).status_code == 200


def test_sql_outage_is_503_not_500(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, redis_url)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Token {ensure_dev_project(app.state.container).key}"
        assert c.get("/v1/ping/").status_code == 200
        (tmp_path / "engram.db").unlink()  # the database vanishes under the running API
        (tmp_path / "engram.db").mkdir()  # ...and its path cannot even be opened again
        app.state.container.engine.dispose()  # pooled connections would still hold the unlinked file
        from api import deps

        deps._key_cache.clear()
        response = c.get("/v1/ping/")
        assert response.status_code == 503 and response.headers["retry-after"]
