"""What only the Weaviate adapter has: client lifecycle, paging limits, batch failures, old servers.

Runs on the in-process server model (tests/contract/weaviate_model.py); the shared behaviour is
in tests/contract/, which also runs against a real Weaviate when WEAVIATE_URL is set.
"""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from engram import filters
from engram.errors import TransientError
from engram.vectorstores import weaviate_store
from engram.vectorstores.weaviate_store import WeaviateConfig, WeaviateVectorStore, connect
from tests.contract.helpers import ids, record
from tests.contract.weaviate_model import ModelClient, ModelTenant

P = "proj_unit"


def make(model: ModelClient | None = None, **config: Any) -> tuple[WeaviateVectorStore, ModelClient]:
    model = model or ModelClient()
    return WeaviateVectorStore(WeaviateConfig(dimensions=4, **config), client_factory=lambda _: model), model


def test_lists_past_one_page_and_past_the_query_window(monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = make()
    store.upsert([record(f"m{i:02}", P, [1, i / 10, 0, 0], minutes=i, expiration_date=None) for i in range(20)])
    store.upsert([record("gone", P, [1, 0, 0, 0], minutes=99, expiration_date="2000-01-01")])
    monkeypatch.setattr(weaviate_store, "PAGE_SIZE", 3)
    newest = ids(store.list(project_id=P, limit=25))
    assert newest == [f"m{i:02}" for i in reversed(range(20))]
    monkeypatch.setattr(weaviate_store, "QUERY_MAXIMUM_RESULTS", 6)  # now the cursor walks the tenant
    assert ids(store.list(project_id=P, limit=25)) == newest
    where = filters.parse({"created_at": {"gte": "2026-01-01T00:15:00Z"}})
    assert ids(store.list(project_id=P, where=where, limit=25)) == newest[:5]
    assert store.count(project_id=P, where=where, include_expired=False) == 5


def test_a_server_without_not_gets_the_same_answers() -> None:
    store, _ = make(ModelClient(version="1.30.5"))
    store.upsert([record("a", P, [1, 0, 0, 0], categories=["x"]), record("b", P, [0, 1, 0, 0], user_id="bob")])
    for raw, expected in (({"NOT": {"user_id": "ana"}}, ["b"]), ({"categories": {"ne": "x"}}, ["b"])):
        assert ids(store.search([1, 0, 0, 0], project_id=P, where=filters.parse(raw), limit=5)) == expected


def test_failed_objects_raise_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ModelTenant, objects: list[Any]) -> Any:
        return SimpleNamespace(has_errors=True, errors={0: SimpleNamespace(message="disk full")}, uuids={})

    store, _ = make()
    monkeypatch.setattr(ModelTenant, "_insert_many", refuse)
    with pytest.raises(TransientError, match="refused 1 of 1 memories: disk full"):
        store.upsert([record("m1", P, [1, 0, 0, 0])])


def test_a_wrong_sized_vector_is_refused_before_sending() -> None:
    store, _ = make()
    with pytest.raises(ValueError, match="3-d vector"):
        store.upsert([record("m1", P, [1, 0, 0])])


def test_one_client_per_process_rebuilt_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ModelClient] = []
    shared = ModelClient()

    def factory(_: WeaviateConfig) -> ModelClient:
        built.append(ModelClient())
        built[-1].schemas = shared.schemas  # same server, new connection
        return built[-1]

    store = WeaviateVectorStore(WeaviateConfig(dimensions=4), client_factory=factory)
    store.upsert([record("m1", P, [1, 0, 0, 0])])
    store.get("m1", P)
    assert len(built) == 1
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked worker process
    assert store.get("m1", P) is not None
    assert len(built) == 2 and not built[0].closed  # the parent's client is left alone
    store.close()
    assert built[1].closed
    assert store.count(project_id=P) == 1 and len(built) == 3  # used again: connects again


def test_an_unsuitable_collection_is_a_clear_error() -> None:
    model = ModelClient()
    model._create("EngramMemories", **{**weaviate_store.collection_options(4), "multi_tenancy_config": None})
    with pytest.raises(ValueError, match="without multi-tenancy"):
        make(model)[0].ping()
    assert model.closed  # a failed start leaves no client open


def test_an_unreachable_server_is_a_clear_transient_error() -> None:
    port, grpc_port = free_port(), free_port()
    config = WeaviateConfig(url=f"http://127.0.0.1:{port}", grpc_port=grpc_port, init_timeout_seconds=1)
    with pytest.raises(TransientError, match=f"Weaviate is unreachable at http://127.0.0.1:{port}"):
        connect(config)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_config_checks_the_collection_name() -> None:
    with pytest.raises(ValueError, match="capital letter"):
        WeaviateConfig(collection="memories")


def test_the_container_builds_it_from_settings_without_connecting(tmp_path: Any) -> None:
    from config.container import Container
    from config.settings import Settings

    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        vector_store={  # type: ignore[arg-type]
            "provider": "weaviate",
            "search_mode": "vector",
            "hybrid_alpha": 0.3,
            "weaviate": {"url": "https://weaviate.internal:443", "api_key": "secret", "collection": "Mem"},
        },
    )
    container = Container(settings)
    store = container.vector_store
    assert isinstance(store, WeaviateVectorStore)
    c = store.config
    assert (c.url, c.api_key, c.collection, c.grpc_port, c.dimensions) == (
        "https://weaviate.internal:443",
        "secret",
        "Mem",
        50051,
        384,
    )
    assert (c.search_mode, c.hybrid_alpha) == ("vector", 0.3)
    container.close()  # closes the store too: nothing was opened, nothing fails
