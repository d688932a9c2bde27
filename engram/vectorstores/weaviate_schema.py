"""engram's Weaviate collection: its properties, and memories to objects and back (pure, no server).

One collection per deployment, one tenant per project. Vectors are ours (no vectorizer), cosine
distance, HNSW. Why some values look odd in the console (see ``weaviate_filters`` for the detail):
filterable text is stored as ``|value|``, categories carry a ``||`` sentinel, and the two
timestamps also exist as integer microseconds (``*_us``), all so filters are exact.

Metadata is stored as JSON text and filtered in Python: Weaviate's ``object`` type needs its nested
keys declared up front (metadata is free-form) and cannot be filtered on anyway.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

from engram.ids import ENGRAM_NAMESPACE
from engram.ports import MemoryRecord
from engram.scope import Scope
from engram.vectorstores.weaviate_filters import (
    CATEGORIES,
    EXPIRES_ON,
    expires_on,
    from_micros,
    micros,
    unwrap,
    wrap,
)

TEXT_PROPERTY = "memory"
_DIMENSIONS = re.compile(r"dimensions=(\d+)")


def _filterable_text(name: str) -> Property:
    return Property(
        name=name,
        data_type=DataType.TEXT,
        tokenization=Tokenization.FIELD,
        index_filterable=True,
        index_searchable=False,
    )


def _stored(name: str, data_type: DataType) -> Property:
    return Property(name=name, data_type=data_type, index_filterable=False, index_searchable=False)


def _ranged_int(name: str) -> Property:
    return Property(name=name, data_type=DataType.INT, index_filterable=True, index_range_filters=True)


def properties() -> list[Property]:
    return [
        # BM25 (hybrid search) over the memory text; the only searchable property.
        Property(
            name=TEXT_PROPERTY,
            data_type=DataType.TEXT,
            tokenization=Tokenization.WORD,
            index_searchable=True,
            index_filterable=False,
        ),
        _filterable_text("memory_id"),
        _filterable_text("user_id"),
        _filterable_text("agent_id"),
        _filterable_text("run_id"),
        _filterable_text("app_id"),
        Property(
            name=CATEGORIES,
            data_type=DataType.TEXT_ARRAY,
            tokenization=Tokenization.FIELD,
            index_filterable=True,
            index_searchable=False,
        ),
        _stored("project_id", DataType.TEXT),
        _stored("hash", DataType.TEXT),
        _stored("metadata", DataType.TEXT),
        _stored("created_at", DataType.DATE),
        _stored("updated_at", DataType.DATE),
        _stored("expiration_date", DataType.TEXT),
        _stored("immutable", DataType.BOOL),
        _ranged_int("created_at_us"),
        _ranged_int("updated_at_us"),
        _ranged_int(EXPIRES_ON),
    ]


def collection_options(dimensions: int) -> dict[str, Any]:
    """Keyword arguments of ``client.collections.create`` (besides the name)."""
    return {
        # Weaviate does not record the size of self-provided vectors; the description does, so a
        # process with another embedder fails at start instead of at its first write.
        "description": f"engram memories; dimensions={dimensions}",
        "properties": properties(),
        "vector_config": Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
        ),
        "multi_tenancy_config": Configure.multi_tenancy(
            enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
        ),
    }


def recorded_dimensions(description: str | None) -> int | None:
    found = _DIMENSIONS.search(description or "")
    return int(found.group(1)) if found else None


def object_uuid(memory_id: str) -> str:
    """Memory ids are UUIDs already (used as they are, so Weaviate's id is the memory's id);
    anything else gets a stable uuid5, so writing the same memory twice is an upsert."""
    try:
        return str(uuid.UUID(memory_id))
    except ValueError:
        return str(uuid.uuid5(ENGRAM_NAMESPACE, f"memory:{memory_id}"))


def to_properties(r: MemoryRecord) -> dict[str, Any]:
    properties = {
        TEXT_PROPERTY: r.memory,
        "memory_id": wrap(r.id),
        "user_id": wrap(r.scope.user_id),
        "agent_id": wrap(r.scope.agent_id),
        "run_id": wrap(r.scope.run_id),
        "app_id": wrap(r.app_id or ""),
        CATEGORIES: [wrap("")] + [wrap(c) for c in r.categories],
        "project_id": r.scope.project_id,
        "hash": r.hash,
        "metadata": json.dumps(r.metadata or {}, ensure_ascii=False, default=str),
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "expiration_date": r.expiration_date,
        "immutable": bool(r.immutable),
        "created_at_us": micros(r.created_at),
        "updated_at_us": micros(r.updated_at),
        EXPIRES_ON: expires_on(r.expiration_date),
    }
    # An unset value is left out rather than sent as null (the only one: expiration_date).
    # Integers travel as JSON numbers (doubles): microseconds stay exact until the year 2255.
    return {key: value for key, value in properties.items() if value is not None}


def from_object(properties: dict[str, Any], vector: Any, score: float | None = None) -> MemoryRecord:
    p = properties
    if isinstance(vector, dict):  # the client returns {vector name: vector}; ours is the default one
        vector = vector.get("default", next(iter(vector.values()), None))
    return MemoryRecord(
        id=unwrap(p["memory_id"]),
        memory=p.get(TEXT_PROPERTY) or "",
        hash=p.get("hash") or "",
        scope=Scope(
            p.get("project_id") or "",
            unwrap(p.get("user_id") or ""),
            unwrap(p.get("agent_id") or ""),
            unwrap(p.get("run_id") or ""),
        ),
        vector=[float(v) for v in vector] if vector is not None else [],
        created_at=from_micros(p["created_at_us"]),
        updated_at=from_micros(p["updated_at_us"]),
        metadata=json.loads(p.get("metadata") or "{}"),
        app_id=unwrap(p.get("app_id") or ""),
        categories=[unwrap(c) for c in (p.get(CATEGORIES) or []) if c != wrap("")],
        expiration_date=p.get("expiration_date") or None,
        immutable=bool(p.get("immutable")),
        score=score,
    )
