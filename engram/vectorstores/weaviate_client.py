"""Connecting to Weaviate: the adapter's connection settings and one v4 client (REST + gRPC).

Kept apart from the store so the store's logic can run on any client-shaped object (tests use an
in-process model of the server).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from weaviate.exceptions import (
    WeaviateBaseError,
    WeaviateClosedClientError,
    WeaviateConnectionError,
    WeaviateGRPCUnavailableError,
    WeaviateTimeoutError,
)

from engram.errors import TransientError
from engram.ports import SearchMode

_COLLECTION_NAME = re.compile(r"[A-Z][_0-9A-Za-z]*")
# The server (or the way to it) is down: worth retrying, unlike a query Weaviate refused.
UNAVAILABLE = (WeaviateConnectionError, WeaviateTimeoutError, WeaviateGRPCUnavailableError, WeaviateClosedClientError)


class WeaviateConfig(BaseModel):
    url: str = Field("http://localhost:8080", description="REST endpoint, e.g. https://my-cluster:443")
    grpc_host: str | None = Field(None, description="gRPC host; the URL's host when unset")
    grpc_port: int = Field(50051, gt=0)
    grpc_secure: bool | None = Field(None, description="TLS for gRPC; like the URL's scheme when unset")
    api_key: str | None = None
    collection: str = "EngramMemories"
    dimensions: int = Field(384, gt=0)
    batch_size: int = Field(100, gt=0, description="Objects per insert_many call")
    init_timeout_seconds: float = Field(10.0, gt=0)
    query_timeout_seconds: float = Field(30.0, gt=0)
    insert_timeout_seconds: float = Field(120.0, gt=0)
    # Defaults mirror config.settings.VectorStoreSettings (which the container always passes).
    search_mode: SearchMode = "hybrid"
    hybrid_alpha: float = Field(0.4, ge=0, le=1)

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not _COLLECTION_NAME.fullmatch(value):
            raise ValueError("a Weaviate collection name starts with a capital letter, then letters, digits or _")
        return value


def connect(config: WeaviateConfig) -> Any:
    """A connected v4 client; a clear ``TransientError`` if the server cannot be reached."""
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    url = urlsplit(config.url)
    secure = url.scheme == "https"
    host = url.hostname or "localhost"
    grpc_host = config.grpc_host or host
    try:
        return weaviate.connect_to_custom(
            http_host=host,
            http_port=url.port or (443 if secure else 80),
            http_secure=secure,
            grpc_host=grpc_host,
            grpc_port=config.grpc_port,
            grpc_secure=secure if config.grpc_secure is None else config.grpc_secure,
            auth_credentials=Auth.api_key(config.api_key) if config.api_key else None,
            additional_config=AdditionalConfig(
                timeout=Timeout(
                    init=config.init_timeout_seconds,
                    query=config.query_timeout_seconds,
                    insert=config.insert_timeout_seconds,
                )
            ),
        )
    except WeaviateBaseError as exc:
        raise TransientError(
            f"Weaviate is unreachable at {config.url} (gRPC {grpc_host}:{config.grpc_port}): {exc}"
        ) from exc


def server_version(client: Any) -> tuple[int, ...]:
    """(major, minor, patch) of the server the client talks to."""
    return tuple(int(p) for p in re.findall(r"\d+", str(client.get_meta().get("version", "0")))[:3])
