"""The vector store contract: one suite, every store.

Each test runs against the embedded LanceDB store, against ``WeaviateVectorStore`` on an
in-process model of the Weaviate server (``weaviate_model``), and against a real Weaviate when
``WEAVIATE_URL`` is set (``WEAVIATE_GRPC_PORT``, ``WEAVIATE_API_KEY`` optional). Weaviate cannot run
on the development or CI machines, so without ``WEAVIATE_URL`` those tests are skipped, in CI too,
and the run says so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engram.ports import VectorStore
from engram.vectorstores.lance import LanceConfig, LanceVectorStore
from engram.vectorstores.weaviate_store import WeaviateConfig, WeaviateVectorStore, connect
from tests.contract.helpers import DIM
from tests.contract.weaviate_model import ModelClient

WEAVIATE_URL = os.environ.get("WEAVIATE_URL", "")
WEAVIATE_SKIP = "WEAVIATE_URL not set: Weaviate contract tests skipped"

StoreFactory = Callable[..., VectorStore]


def weaviate_config(**overrides: Any) -> WeaviateConfig:
    values: dict[str, Any] = {
        "url": WEAVIATE_URL,
        "grpc_port": int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")),
        "api_key": os.environ.get("WEAVIATE_API_KEY") or None,
        "dimensions": DIM,
    }
    return WeaviateConfig(**(values | overrides))


@pytest.fixture(scope="session")
def weaviate_collection() -> Iterator[str]:
    """A collection of its own for this session on the real server, dropped at the end."""
    if not WEAVIATE_URL:
        pytest.skip(WEAVIATE_SKIP)  # a skip in CI too: no Weaviate can run there (see DESIGN.md)
    name = f"EngramContract{uuid.uuid4().hex[:10]}"
    yield name
    client = connect(weaviate_config())
    try:
        client.collections.delete(name)
    finally:
        client.close()


@pytest.fixture(
    params=["lance", "lance-native", "weaviate-model", pytest.param("weaviate", marks=pytest.mark.weaviate)]
)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes stores of one kind over the same data, as separate processes would see it."""
    kind = request.param
    made: list[Any] = []
    model = ModelClient()
    collection = request.getfixturevalue("weaviate_collection") if kind == "weaviate" else ""

    def make(**overrides: Any) -> VectorStore:
        options = {"dimensions": DIM} | overrides
        store: Any
        if kind.startswith("lance"):
            store = LanceVectorStore(LanceConfig(path=tmp_path / "lance", **options))
            if kind == "lance-native":
                store.search_with_pylance()  # as the API's store answers searches
        elif kind == "weaviate-model":
            store = WeaviateVectorStore(WeaviateConfig(**options), client_factory=lambda _: model)
        else:
            store = WeaviateVectorStore(weaviate_config(collection=collection, **options))
        made.append(store)
        return store  # type: ignore[no-any-return]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(new_store: StoreFactory) -> VectorStore:
    return new_store()


@pytest.fixture
def project() -> str:
    """A project (a tenant in Weaviate) of this test's own."""
    return f"proj_contract_{uuid.uuid4().hex[:10]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the real-Weaviate cases up front: as a mark, pytest folds them into one line per file."""
    if WEAVIATE_URL:
        return
    for item in items:
        if item.get_closest_marker("weaviate") is not None:
            item.add_marker(pytest.mark.skip(reason=WEAVIATE_SKIP))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not WEAVIATE_URL:
        terminalreporter.write_line(WEAVIATE_SKIP + " (the Lance and Weaviate-model variants ran)")
