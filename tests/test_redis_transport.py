"""The broker transport: kombu's Redis transport with one client per channel (workers/redis_transport.py)."""

from __future__ import annotations

from pathlib import Path

from kombu import Connection

from tests.conftest import make_settings
from workers.celery_app import celery_config, producer
from workers.redis_transport import TRANSPORT, Transport


def test_a_channel_reuses_its_client_until_kombu_replaces_the_pool(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.default_channel
        client = channel._create_client()
        assert channel._create_client() is client
        assert client.ping()
        channel._disconnect_pools()  # what kombu does on a connection error: a new pool, so a new client
        again = channel._create_client()
        assert again is not client and again.connection_pool is channel.pool and again.ping()


def test_messages_go_through_and_every_publish_shares_the_client(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, redis_url)
    app = producer(settings)
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
        queue = conn.SimpleQueue("transport-test")
        try:
            queue.put({"n": 0})
            shared = conn.default_channel._shared
            for i in (1, 2):
                queue.put({"n": i})
            got = [queue.get(timeout=5) for _ in range(3)]
            for message in got:
                message.ack()
            assert [m.payload["n"] for m in got] == [0, 1, 2]
            assert shared is not None and conn.default_channel._shared is shared
        finally:
            queue.clear()
            queue.close()


def test_other_broker_schemes_keep_kombus_transport(redis_url: str, tmp_path: Path) -> None:
    assert celery_config(make_settings(tmp_path, redis_url))["broker_transport"] == TRANSPORT
    tls = make_settings(tmp_path, redis_url.replace("redis://", "rediss://", 1))
    assert celery_config(tls)["broker_transport"] is None
