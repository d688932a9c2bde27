"""``GET /metrics``: request counters by route template, jobs by state, queue depths."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from engram.bootstrap import ensure_dev_project
from tests.conftest import make_settings


def test_metrics_endpoint(tmp_path: Path, redis_url: str) -> None:
    app = create_app(make_settings(tmp_path, redis_url))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Token {ensure_dev_project(app.state.container).key}"
        assert client.post("/v1/memories/", json={"messages": "I like figs.", "user_id": "m"}).status_code == 202
        assert client.get("/v1/memories/nope/").status_code == 404
        body = client.get("/metrics").text
    assert 'engram_jobs{status="PENDING"} 1.0' in body
    assert 'engram_queue_depth{queue="llm"}' in body
    assert 'engram_http_requests_total{method="GET",route="/v1/memories/{memory_id}/",status="404"}' in body
    assert "engram_http_request_seconds_bucket" in body
