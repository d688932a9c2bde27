"""Settings, the composition root and provider discovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.container import Container
from config.settings import Settings
from engram import plugins
from engram.llm.heuristic import HeuristicLLM
from engram.llm.litellm_llm import LiteLLM
from tests.conftest import make_settings


def test_nested_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_LLM__PROVIDER", "litellm")
    monkeypatch.setenv("ENGRAM_LLM__MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("ENGRAM_PIPELINE__MAX_ATTEMPTS_PER_STAGE", "3")
    settings = Settings()
    assert settings.llm.provider == "litellm" and settings.pipeline.max_attempts_per_stage == 3


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_PIPELINE__MAX_ATTEMPTS_PER_STAGE", "0")
    with pytest.raises(ValidationError, match="max_attempts_per_stage"):
        Settings()


def test_production_refuses_development_defaults() -> None:
    with pytest.raises(ValidationError, match="heuristic"):
        Settings(environment="production")
    Settings(
        environment="production",
        llm={"provider": "litellm"},
        sql={"url": "postgresql+psycopg://engram@db/engram"},
        redis={"url": "redis://:secret@redis:6379/0"},
    )


def test_container_builds_providers_lazily_from_settings() -> None:
    c = Container(Settings(llm={"provider": "litellm", "model": "openai/x", "api_base": "http://127.0.0.1:9"}))
    assert "llm" not in c.__dict__  # nothing built (or connected) until asked
    llm = c.llm
    assert isinstance(llm, LiteLLM) and llm.config.model == "openai/x"
    assert isinstance(Container(Settings()).llm, HeuristicLLM)


def test_unknown_provider_lists_the_installed_ones() -> None:
    with pytest.raises(ValueError, match="installed: heuristic, litellm"):
        _ = Container(Settings(llm={"provider": "nope"})).llm


def test_entry_point_providers_are_discovered(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    def fake_entry_points(group: str) -> list[EntryPoint]:
        if group == "engram.llms":
            return [EntryPoint("third_party", "engram.llm.heuristic:HeuristicLLM", group)]
        return []

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    assert plugins.available("llm")["third_party"].builtin is False
    assert plugins.load("llm", "third_party") is HeuristicLLM


def test_only_worker_processes_run_the_store_on_one_runtime_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's store calls are small and serial per thread; the API's hybrid search runs two queries at once.
    from config.settings import get_settings
    from workers import runtime

    monkeypatch.setenv("ENGRAM_VECTOR_STORE__PATH", str(tmp_path))
    monkeypatch.setenv("ENGRAM_ENVIRONMENT", "test")
    get_settings.cache_clear()
    runtime.reset()
    try:
        worker_store = runtime.container().vector_store
        assert worker_store.config.runtime_threads == 1  # type: ignore[attr-defined]
        assert Container(get_settings()).vector_store.config.runtime_threads is None  # type: ignore[attr-defined]
        monkeypatch.setenv("ENGRAM_VECTOR_STORE__WORKER_RUNTIME_THREADS", "0")  # one per core
        get_settings.cache_clear()
        runtime.reset()
        assert runtime.container().vector_store.config.runtime_threads is None  # type: ignore[attr-defined]
    finally:
        runtime.reset()
        get_settings.cache_clear()


def test_the_api_embeds_queries_on_every_core_and_workers_on_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # A search waits on its query's embedding; a worker embeds beside many other processes and threads.
    from fastapi.testclient import TestClient

    from api.main import create_app
    from config.settings import get_settings
    from workers import runtime

    with TestClient(create_app(make_settings(tmp_path / "api", redis_url))) as client:
        container = client.app.state.container  # type: ignore[attr-defined]
        assert container.embedder.config.threads == os.cpu_count()
        assert container.vector_store._searches_natively
    c = Container(make_settings(tmp_path / "other", redis_url, embedder={"api_threads": 3}))
    c.serve_searches()
    assert c.embedder.config.threads == 3  # type: ignore[attr-defined]
    monkeypatch.setenv("ENGRAM_VECTOR_STORE__PATH", str(tmp_path / "worker"))
    monkeypatch.setenv("ENGRAM_ENVIRONMENT", "test")
    get_settings.cache_clear()
    runtime.reset()
    try:
        assert runtime.container().embedder.config.threads == 1  # type: ignore[attr-defined]
    finally:
        runtime.reset()
        get_settings.cache_clear()
