"""The embedded store's upkeep handed from the writers to one worker (workers/upkeep.py), on real Redis.

Upkeep loads pylance (~66 MB resident), so the API and the LLM workers ask a default-queue worker for
it instead of running it after their own writes. The end-to-end run of the task is in tests/test_e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.container import UPKEEP_ASKED_KEY, Container
from engram.vectorstores import lance_upkeep
from tests.conftest import make_settings
from tests.contract.helpers import record

WRITES = 12


@pytest.fixture
def container(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Container]:
    # Small tiers, so that WRITES one-row commits are more than a tier holds and inline upkeep would compact.
    monkeypatch.setattr(lance_upkeep, "TIERS", (4, 1_048_576))
    monkeypatch.setattr(lance_upkeep, "FANOUT", 4)
    # An interval no test outlasts: "at most once per interval" is then exactly once.
    settings = make_settings(
        tmp_path, redis_url, vector_store={"path": tmp_path / "vectors", "upkeep_interval_seconds": 60}
    )
    c = Container(settings)
    yield c
    c.close()
    with redis.Redis.from_url(settings.redis.url) as r:
        r.delete(settings.redis.key_prefix + UPKEEP_ASKED_KEY)


def _write(c: Container) -> None:
    dims = c.settings.embedder.dimensions
    for i in range(WRITES):
        c.vector_store.upsert([record(f"m{i}", "p1", [1.0, float(i)] + [0.0] * (dims - 2), f"entry {i}")])


def _fragments(c: Container) -> int:
    return int(c.vector_store._open().stats()["fragment_stats"]["num_fragments"])  # type: ignore[attr-defined]


def test_writers_ask_for_upkeep_once_per_interval_and_leave_it_to_the_worker(container: Container) -> None:
    asked: list[int] = []
    container.upkeep_sender = lambda: asked.append(1)
    _write(container)
    assert asked == [1]  # twelve writes, one request across the interval
    assert _fragments(container) >= WRITES  # nothing compacted in the writing process
    container.vector_store.upkeep()  # type: ignore[attr-defined]  # what the task runs
    assert _fragments(container) < WRITES
    assert container.vector_store.count(project_id="p1") == WRITES


def test_a_process_with_no_broker_keeps_its_store_itself(container: Container) -> None:
    _write(container)  # no upkeep_sender: the CLI, an in-process store
    assert _fragments(container) <= 4 + 4 + 2


def test_a_failed_hand_off_runs_the_upkeep_in_the_writer(container: Container) -> None:
    asked: list[int] = []
    container.upkeep_sender = lambda: asked.append(1)
    # Redis down: every ask fails, at once.
    container.__dict__["redis"] = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    _write(container)
    assert asked == []
    assert _fragments(container) <= 4 + 4 + 2
    assert container.vector_store.count(project_id="p1") == WRITES
