"""``WeaviateVectorStore``: the production vector store (Weaviate, client v4 over gRPC).

- One client per process, built on first use and rebuilt if the process has forked since (a gRPC
  channel must not cross a fork); ``close()`` releases it. The container calls ``close()``.
- One collection per deployment (``collection``), multi-tenant: one tenant per project, so a
  project's memories are isolated by the server and ``delete_project`` drops the tenant at once.
- Object uuid = memory id (uuid5 of it when it is not a UUID): every write is an upsert.
- Writes go in fixed-size ``insert_many`` batches, synchronously; any failed object raises
  ``TransientError`` (the pipeline retries, and the retry is an upsert).
- Filters: ``weaviate_filters`` translates what Weaviate answers exactly; the rest is checked in
  Python on the candidates, and every result is re-checked with ``filters.matches``.
- ``ping()`` (the health check, and the first use) fails clearly if the server is unreachable or
  the collection holds vectors of another size than the embedder's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.classes.tenants import Tenant
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import WeaviateBaseError

from engram import filters
from engram.errors import TransientError
from engram.filters import Node
from engram.ports import MemoryRecord, SearchMode, VectorStore
from engram.vectorstores import hybrid
from engram.vectorstores.weaviate_client import UNAVAILABLE, WeaviateConfig, connect, server_version
from engram.vectorstores.weaviate_filters import not_expired, split, tenant_name, wrap
from engram.vectorstores.weaviate_schema import (
    TEXT_PROPERTY,
    collection_options,
    from_object,
    object_uuid,
    recorded_dimensions,
    to_properties,
)

__all__ = ["WeaviateConfig", "WeaviateVectorStore", "connect"]

log = logging.getLogger(__name__)

# Weaviate refuses offset + limit above QUERY_MAXIMUM_RESULTS (10,000 by default).
QUERY_MAXIMUM_RESULTS = 10_000
PAGE_SIZE = 1_000
# A residual filter widens the candidate window by this factor per round, up to the maximum.
CANDIDATE_GROWTH = 4
FIRST_NEGATION_VERSION = (1, 33)  # the Not operator


def _tenant_missing(exc: Exception) -> bool:
    text = str(exc).lower()
    return "tenant" in text and ("not found" in text or "does not exist" in text)


class WeaviateVectorStore:
    config_model = WeaviateConfig

    def __init__(self, config: WeaviateConfig, client_factory: Callable[[WeaviateConfig], Any] = connect) -> None:
        self.config = config
        self.dimensions = config.dimensions
        self._client_factory = client_factory
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid: int | None = None
        self._collection: Any = None
        self._negation = True
        self._tenants: set[str] = set()  # tenants this process knows to exist

    # -- lifecycle -----------------------------------------------------------------------------
    def _open(self) -> Any:
        """The collection handle for this process, connecting (and checking) on first use."""
        if self._collection is not None and self._pid == os.getpid():
            return self._collection
        with self._lock:
            if self._collection is None or self._pid != os.getpid():
                # After a fork the parent's client is not ours to use or to close: just drop it.
                self._client, self._collection, self._tenants = None, None, set()
                client = self._client_factory(self.config)
                try:
                    collection = self._ensure_collection(client)
                    self._negation = server_version(client) >= FIRST_NEGATION_VERSION
                except BaseException:
                    client.close()
                    raise
                self._client, self._collection, self._pid = client, collection, os.getpid()
        return self._collection

    def _ensure_collection(self, client: Any) -> Any:
        name = self.config.collection
        if not client.collections.exists(name):
            try:
                client.collections.create(name, **collection_options(self.dimensions))
            except WeaviateBaseError:
                if not client.collections.exists(name):  # else another process created it first
                    raise
        collection = client.collections.use(name)
        config = collection.config.get()
        if not config.multi_tenancy_config.enabled:
            raise ValueError(f"Weaviate collection {name!r} exists without multi-tenancy; engram needs its own")
        recorded = recorded_dimensions(config.description)
        if recorded is not None and recorded != self.dimensions:
            raise ValueError(
                f"Weaviate collection {name!r} holds {recorded}-d vectors; the embedder gives "
                f"{self.dimensions}-d. Use another collection or re-embed."
            )
        return collection

    def ping(self) -> None:
        self._open()
        if not self._client.is_ready():
            raise TransientError(f"Weaviate at {self.config.url} is not ready")

    def close(self) -> None:
        with self._lock:
            client, self._client, self._collection = self._client, None, None
            if client is not None and self._pid == os.getpid():
                client.close()

    # -- tenants -------------------------------------------------------------------------------
    def _tenant(self, name: str, *, create: bool) -> Any | None:
        """The collection bound to tenant ``name``; None if there is no such tenant and ``create`` is False."""
        collection = self._open()
        if name not in self._tenants:
            if not collection.tenants.exists(name):
                if not create:
                    return None
                try:
                    collection.tenants.create([Tenant(name=name)])
                except WeaviateBaseError:
                    if not collection.tenants.exists(name):  # else another process created it first
                        raise
            self._tenants.add(name)
        return collection.with_tenant(name)

    def _read(self, name: str, query: Callable[[Any], Any], empty: Any) -> Any:
        """Run ``query`` on tenant ``name``; a project without a tenant (yet, or any more) is empty."""
        try:
            tenant = self._tenant(name, create=False)
            return empty if tenant is None else query(tenant)
        except UNAVAILABLE as exc:
            raise TransientError(f"Weaviate at {self.config.url} is unavailable: {exc}") from exc
        except WeaviateBaseError as exc:
            if not _tenant_missing(exc):
                raise
            self._tenants.discard(name)  # another process dropped the project
            return empty

    # -- writes --------------------------------------------------------------------------------
    def upsert(self, records: Sequence[MemoryRecord]) -> None:
        by_project: dict[str, list[MemoryRecord]] = {}
        for record in records:
            if len(record.vector) != self.dimensions:
                raise ValueError(f"memory {record.id} has a {len(record.vector)}-d vector; expected {self.dimensions}")
            by_project.setdefault(record.scope.project_id, []).append(record)
        for project_id, group in by_project.items():
            name = tenant_name(project_id)
            tenant = self._tenant(name, create=True)
            for start in range(0, len(group), self.config.batch_size):
                self._insert_batch(name, tenant, group[start : start + self.config.batch_size])

    def insert(self, records: Sequence[MemoryRecord]) -> None:
        # Every Weaviate write is by uuid already: nothing cheaper to do for new ids.
        self.upsert(records)

    def _insert_batch(self, name: str, tenant: Any, batch: Sequence[MemoryRecord]) -> None:
        objects = [
            DataObject(properties=to_properties(r), uuid=object_uuid(r.id), vector=[float(v) for v in r.vector])
            for r in batch
        ]
        try:
            result = tenant.data.insert_many(objects)
        except WeaviateBaseError as exc:  # unreachable, timed out, or every object refused
            self._tenants.discard(name)  # re-checked (and re-created) on the retry
            raise TransientError(f"Weaviate refused a batch of {len(batch)} memories: {exc}") from exc
        if result.has_errors:
            self._tenants.discard(name)
            reasons = sorted({str(e.message) for e in result.errors.values()})
            raise TransientError(
                f"Weaviate refused {len(result.errors)} of {len(batch)} memories: {'; '.join(reasons[:3])}"
            )

    def delete(self, ids: Sequence[str], *, project_id: str | None = None) -> None:
        if not ids:
            return
        if project_id is not None:
            names = [tenant_name(project_id)]
        else:  # no project given: the ids may be in any tenant
            names = [str(n) for n in self._open().tenants.get()]
            self._tenants.update(names)
        for start in range(0, len(ids), PAGE_SIZE):
            where = Filter.by_property("memory_id").contains_any([wrap(i) for i in ids[start : start + PAGE_SIZE]])

            def remove(tenant: Any, where: _Filters = where) -> None:
                tenant.data.delete_many(where=where)

            for name in names:
                self._read(name, remove, None)

    def delete_project(self, project_id: str) -> int:
        name = tenant_name(project_id)
        count = self._read(name, lambda t: t.aggregate.over_all(total_count=True).total_count or 0, 0)
        collection = self._open()
        if collection.tenants.exists(name):
            collection.tenants.remove([name])
        self._tenants.discard(name)
        return int(count)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, memory_id: str, project_id: str) -> MemoryRecord | None:
        uuid = object_uuid(memory_id)
        found = self._read(
            tenant_name(project_id), lambda t: t.query.fetch_object_by_id(uuid, include_vector=True), None
        )
        if found is None:
            return None
        record = from_object(found.properties, found.vector)
        return record if record.id == memory_id else None

    def _filter(self, where: Node | None, include_expired: bool) -> tuple[_Filters | None, bool]:
        pushed, residual = split(where, negation=self._negation)
        parts = [f for f in (pushed, None if include_expired else not_expired()) if f is not None]
        return (Filter.all_of(parts) if parts else None), residual

    def nearest_each(
        self,
        vectors: Sequence[Sequence[float]],
        *,
        project_id: str,
        where: Node | None = None,
        limit: int,
        include_vectors: bool = False,
    ) -> list[list[MemoryRecord]]:
        # The v4 client sends one near_vector per request; a gRPC round trip each is cheap enough here.
        return hybrid.nearest_one_by_one(
            self, vectors, project_id=project_id, where=where, limit=limit, include_vectors=include_vectors
        )

    def search(
        self,
        vector: Sequence[float],
        *,
        project_id: str,
        where: Node | None = None,
        limit: int,
        threshold: float | None = None,
        include_expired: bool = False,
        query_text: str | None = None,
        mode: SearchMode | None = None,
        alpha: float | None = None,
        include_vectors: bool = False,
    ) -> list[MemoryRecord]:
        mode = hybrid.resolve_mode(mode, query_text, self.config.search_mode)
        weight = hybrid.resolve_alpha(alpha, self.config.hybrid_alpha)
        if limit <= 0:
            return []
        self._open()
        weaviate_filter, residual = self._filter(where, include_expired)
        metadata = MetadataQuery(distance=True) if mode == "vector" else MetadataQuery(score=True)
        # A hybrid threshold is on cosine similarity (engram.vectorstores.hybrid): computed from the vectors.
        cosine_threshold = mode == "hybrid" and threshold is not None
        with_vectors = include_vectors or cosine_threshold

        def fetch(tenant: Any, window: int) -> list[Any]:
            if mode == "vector":
                found = tenant.query.near_vector(
                    near_vector=[float(v) for v in vector],
                    limit=window,
                    filters=weaviate_filter,
                    include_vector=with_vectors,
                    return_metadata=metadata,
                )
            else:
                found = tenant.query.hybrid(
                    query=query_text,
                    vector=[float(v) for v in vector],
                    alpha=weight,
                    fusion_type=HybridFusion.RELATIVE_SCORE,
                    query_properties=[TEXT_PROPERTY],
                    limit=window,
                    filters=weaviate_filter,
                    include_vector=with_vectors,
                    return_metadata=metadata,
                )
            return list(found.objects)

        def score_of(obj: Any) -> float:
            if mode == "vector":
                return 1.0 - float(obj.metadata.distance)
            return float(obj.metadata.score or 0.0)

        # Exact filters need exactly ``limit``; a residual widens the window until enough pass it.
        window = max(limit, hybrid.candidates_for(limit)) if residual else limit
        name = tenant_name(project_id)
        while True:
            objects = self._read(name, partial(fetch, window=window), [])
            kept = []
            for obj in objects:
                record = from_object(obj.properties, obj.vector if with_vectors else None, score_of(obj))
                relevance = hybrid.cosine(vector, record.vector) if cosine_threshold else record.score or 0.0
                if (threshold is None or relevance >= threshold) and _admitted(record, where, include_expired):
                    if not include_vectors:
                        record.vector = []
                    kept.append(record)
            # Results come best first: in vector mode one below the threshold means all the rest are too.
            below = threshold is not None and mode == "vector" and bool(objects) and score_of(objects[-1]) < threshold
            if len(kept) >= limit or len(objects) < window or below or window >= QUERY_MAXIMUM_RESULTS:
                return kept[:limit]
            window = min(window * CANDIDATE_GROWTH, QUERY_MAXIMUM_RESULTS)

    def _matching(self, project_id: str, where: Node | None, include_expired: bool) -> list[MemoryRecord]:
        weaviate_filter, _ = self._filter(where, include_expired)
        records = self._read(tenant_name(project_id), lambda t: list(self._scan(t, weaviate_filter)), [])
        return [r for r in records if _admitted(r, where, include_expired)]

    def _scan(self, tenant: Any, weaviate_filter: _Filters | None) -> Iterator[MemoryRecord]:
        """Every object the filter admits. Pages by offset while Weaviate allows it; past its
        result window, walks the whole tenant with the cursor API (which takes no filter)."""
        total = tenant.aggregate.over_all(total_count=True, filters=weaviate_filter).total_count or 0
        if total + PAGE_SIZE <= QUERY_MAXIMUM_RESULTS:
            seen: set[str] = set()
            for offset in range(0, total + PAGE_SIZE, PAGE_SIZE):
                page = tenant.query.fetch_objects(
                    filters=weaviate_filter, limit=PAGE_SIZE, offset=offset, include_vector=True
                ).objects
                for obj in page:
                    if str(obj.uuid) not in seen:  # a write between pages may shift one
                        seen.add(str(obj.uuid))
                        yield from_object(obj.properties, obj.vector)
                if len(page) < PAGE_SIZE:
                    return
            return
        for obj in tenant.iterator(include_vector=True):
            yield from_object(obj.properties, obj.vector)  # filtered by the caller with matches()

    def list(
        self,
        *,
        project_id: str,
        where: Node | None = None,
        limit: int,
        offset: int = 0,
        include_expired: bool = False,
    ) -> list[MemoryRecord]:
        records = self._matching(project_id, where, include_expired)
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return records[offset : offset + limit]

    def count(self, *, project_id: str, where: Node | None = None, include_expired: bool = True) -> int:
        self._open()
        weaviate_filter, residual = self._filter(where, include_expired)
        if residual:
            return len(self._matching(project_id, where, include_expired))

        def total(tenant: Any) -> int:
            return int(tenant.aggregate.over_all(total_count=True, filters=weaviate_filter).total_count or 0)

        return int(self._read(tenant_name(project_id), total, 0))


def _admitted(record: MemoryRecord, where: Node | None, include_expired: bool) -> bool:
    """The reference check every result passes, whatever Weaviate was asked."""
    return (include_expired or not filters.is_expired(record)) and filters.matches(where, record)


if TYPE_CHECKING:  # mypy proves the adapter matches the port
    _port: type[VectorStore] = WeaviateVectorStore
