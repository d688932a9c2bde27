"""Shared fixtures: real Redis (a test database number), real SQL (SQLite and PostgreSQL), the real
embedder, and, for end-to-end tests, a real Celery worker process and a real API server process.

A missing service skips a test locally and fails it in CI (CI=true), so CI never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from config.container import Container
from config.settings import Settings
from engram.embedding.local import SentenceTransformerConfig, SentenceTransformerEmbedder
from engram.sql.engine import make_engine
from engram.sql.migrate import upgrade

REDIS_URL = os.environ.get("ENGRAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
PG_ADMIN_URL = os.environ.get("ENGRAM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    # Issue #8: the fault tests (tests/reliability) run small in CI; --soak (or ENGRAM_SOAK=1) runs them long.
    parser.addoption("--soak", action="store_true", default=False, help="run the long variants of the fault tests")


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        missing(f"Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for the whole session."""
    model = SentenceTransformerEmbedder(SentenceTransformerConfig())
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, dropped at the end."""
    name = f"engram_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        missing(f"PostgreSQL at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each SQL test runs against SQLite and against PostgreSQL (a clean schema per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'engram.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    yield base


@pytest.fixture
def sql_engine(sql_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(sql_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def make_settings(tmp_path: Path, redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": tmp_path,
        "sql": {"url": f"sqlite:///{tmp_path / 'engram.db'}"},
        "vector_store": {"path": tmp_path / "vectors"},
        "redis": {"url": redis_url, "key_prefix": f"engram-test-{uuid.uuid4().hex[:8]}:"},
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def container(tmp_path: Path, redis_url: str, embedder: SentenceTransformerEmbedder) -> Iterator[Container]:
    """A container on a temporary SQLite file and vector directory, sharing the session's embedder."""
    c = Container(make_settings(tmp_path, redis_url))
    c.__dict__["embedder"] = embedder  # the model is loaded once per session, not per test
    c.migrate()
    yield c
    c.close()
