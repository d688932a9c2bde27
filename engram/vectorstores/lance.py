"""``LanceVectorStore``: the embedded, on-disk store (LanceDB).

Safe with the API and several worker processes at once: LanceDB commits are atomic and versioned,
reads check for the latest version on every query (``read_consistency_interval=0``), and writers
that lose a commit race retry here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from pydantic import BaseModel, Field

from engram.ports import MemoryRecord
from engram.scope import Scope

log = logging.getLogger(__name__)
T = TypeVar("T")

FILTERABLE_COLUMNS = ("id", "project_id", "user_id", "agent_id", "run_id", "app_id", "hash")
COMMIT_RETRIES = 20


class LanceConfig(BaseModel):
    path: Path
    table: str = "memories"
    dimensions: int = Field(384, gt=0)


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def where_clause(filters: dict[str, Any]) -> str | None:
    """SQL for column equality filters; ``metadata`` is matched in Python (it is JSON)."""
    parts = []
    for key, value in filters.items():
        if key == "metadata":
            continue
        if key not in FILTERABLE_COLUMNS:
            raise ValueError(f"cannot filter on {key!r}")
        if isinstance(value, list | tuple | set):
            if not value:
                return "false"
            parts.append(f"{key} IN ({', '.join(_quote(v) for v in value)})")
        else:
            parts.append(f"{key} = {_quote(value)}")
    return " AND ".join(parts) if parts else None


def metadata_matches(metadata: dict[str, Any], wanted: dict[str, Any] | None) -> bool:
    return not wanted or all(metadata.get(k) == v for k, v in wanted.items())


class LanceVectorStore:
    config_model = LanceConfig

    def __init__(self, config: LanceConfig) -> None:
        self.config = config
        self.dimensions = config.dimensions
        self._table: Any = None
        self._lock = threading.Lock()

    # -- setup ---------------------------------------------------------------------------------
    def _schema(self) -> pa.Schema:
        ts = pa.timestamp("us", tz="UTC")
        return pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("vector", pa.list_(pa.float32(), self.dimensions)),
                pa.field("memory", pa.string()),
                pa.field("hash", pa.string()),
                pa.field("project_id", pa.string()),
                pa.field("user_id", pa.string()),
                pa.field("agent_id", pa.string()),
                pa.field("run_id", pa.string()),
                pa.field("app_id", pa.string()),
                pa.field("metadata", pa.string()),
                pa.field("categories", pa.list_(pa.string())),
                pa.field("created_at", ts),
                pa.field("updated_at", ts),
            ]
        )

    def _open(self) -> Any:
        if self._table is not None:
            return self._table
        with self._lock:
            if self._table is None:
                import lancedb

                self.config.path.mkdir(parents=True, exist_ok=True)
                db = lancedb.connect(str(self.config.path), read_consistency_interval=timedelta(0))
                try:
                    table = db.create_table(self.config.table, schema=self._schema(), exist_ok=True)
                except (ValueError, OSError, RuntimeError):
                    # Another process created it between our check and our create.
                    table = db.open_table(self.config.table)
                width = table.schema.field("vector").type.list_size
                if width != self.dimensions:
                    raise ValueError(
                        f"vector table {self.config.table!r} holds {width}-d vectors; embedder gives "
                        f"{self.dimensions}-d. Use another table or re-embed."
                    )
                self._table = table
        return self._table

    def _retry_commit(self, action: Callable[[], T]) -> T:
        for attempt in range(COMMIT_RETRIES):
            try:
                return action()
            except (OSError, RuntimeError, ValueError) as exc:
                if "onflict" not in str(exc) or attempt == COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def ping(self) -> None:
        self._open().count_rows()

    # -- writes --------------------------------------------------------------------------------
    def _row(self, r: MemoryRecord) -> dict[str, Any]:
        return {
            "id": r.id,
            "vector": r.vector,
            "memory": r.memory,
            "hash": r.hash,
            "app_id": r.app_id,
            "metadata": json.dumps(r.metadata or {}, ensure_ascii=False, default=str),
            "categories": list(r.categories),
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            **r.scope.as_filter(),
        }

    def upsert(self, records: Sequence[MemoryRecord]) -> None:
        if not records:
            return
        table = self._open()
        data = pa.Table.from_pylist([self._row(r) for r in records], schema=self._schema())
        self._retry_commit(
            lambda: table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
        )

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        table = self._open()
        clause = where_clause({"id": list(ids)})
        self._retry_commit(lambda: table.delete(clause))

    def reset(self) -> None:
        table = self._open()
        self._retry_commit(lambda: table.delete("true"))

    # -- reads ---------------------------------------------------------------------------------
    def _record(self, row: dict[str, Any], score: float | None = None) -> MemoryRecord:
        return MemoryRecord(
            id=row["id"],
            memory=row["memory"],
            hash=row["hash"],
            scope=Scope(row["project_id"], row["user_id"], row["agent_id"], row["run_id"]),
            vector=list(row["vector"]) if row.get("vector") is not None else [],
            created_at=_utc(row["created_at"]),
            updated_at=_utc(row["updated_at"]),
            metadata=json.loads(row["metadata"] or "{}"),
            app_id=row["app_id"] or "",
            categories=list(row["categories"] or []),
            score=score,
        )

    def get(self, memory_id: str, project_id: str) -> MemoryRecord | None:
        rows = self._open().search().where(where_clause({"id": memory_id, "project_id": project_id})).limit(1)
        found = rows.to_list()
        return self._record(found[0]) if found else None

    def search(
        self,
        vector: Sequence[float],
        filters: dict[str, Any],
        *,
        limit: int,
        threshold: float | None = None,
    ) -> list[MemoryRecord]:
        table = self._open()
        wanted_metadata = filters.get("metadata")
        # Metadata is matched after the kNN, so ask for more candidates when it filters.
        fetch = limit if not wanted_metadata else max(limit * 10, 200)
        query = table.search(list(vector), vector_column_name="vector").distance_type("cosine")
        clause = where_clause(filters)
        if clause:
            query = query.where(clause, prefilter=True)
        results = []
        for row in query.limit(fetch).to_list():
            score = 1.0 - float(row["_distance"])
            if threshold is not None and score < threshold:
                continue
            record = self._record(row, score)
            if metadata_matches(record.metadata, wanted_metadata):
                results.append(record)
        results.sort(key=lambda r: r.score or 0.0, reverse=True)
        return results[:limit]

    def list(self, filters: dict[str, Any], *, limit: int, offset: int = 0) -> list[MemoryRecord]:
        table = self._open()
        query = table.search()
        clause = where_clause(filters)
        if clause:
            query = query.where(clause)
        total = table.count_rows(clause) if clause else table.count_rows()
        rows = query.limit(max(total, 1)).to_list()
        records = [self._record(r) for r in rows]
        records = [r for r in records if metadata_matches(r.metadata, filters.get("metadata"))]
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return records[offset : offset + limit]

    def count(self, filters: dict[str, Any]) -> int:
        if filters.get("metadata"):
            return len(self.list(filters, limit=10**9))
        clause = where_clause(filters)
        table = self._open()
        return int(table.count_rows(clause) if clause else table.count_rows())


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)
