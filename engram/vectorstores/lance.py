"""``LanceVectorStore``: the embedded, on-disk store (LanceDB).

Safe with the API and several worker processes at once: LanceDB commits are atomic and versioned,
reads check for the latest version on every query (``read_consistency_interval=0``), and writers
that lose a commit race retry here. Filters on scalar columns run inside LanceDB (prefilter);
dates, categories and metadata are checked in Python with ``engram.filters.matches``.
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

from engram import filters
from engram.filters import And, Cond, Node, Not, Or
from engram.ports import MemoryRecord
from engram.scope import Scope

log = logging.getLogger(__name__)
T = TypeVar("T")

COMMIT_RETRIES = 20
# When part of a filter is checked in Python, this many nearest candidates are examined at most.
POST_FILTER_CANDIDATES = 10_000
SQL_COLUMNS = {"id": "id", "user_id": "user_id", "agent_id": "agent_id", "run_id": "run_id", "app_id": "app_id"}


class LanceConfig(BaseModel):
    path: Path
    table: str = "memories"
    dimensions: int = Field(384, gt=0)


def _quote(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _like(value: Any) -> str:
    escaped = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return _quote(f"%{escaped}%")


def to_sql(node: Node | None) -> str | None:
    """LanceDB SQL for a filter made only of scalar-column conditions; None if any part is not."""
    if node is None:
        return None
    if isinstance(node, And | Or):
        parts = [to_sql(n) for n in node.items]
        if any(p is None for p in parts):
            return None
        return "(" + (" AND " if isinstance(node, And) else " OR ").join(parts) + ")"  # type: ignore[arg-type]
    if isinstance(node, Not):
        inner = to_sql(node.item)
        return None if inner is None else f"(NOT {inner})"
    column = SQL_COLUMNS.get(node.field)
    if column is None:
        return None
    return _cond_sql(column, node)


def _cond_sql(column: str, cond: Cond) -> str | None:
    op, value = cond.op, cond.value
    if op == "exists":
        return f"({column} != '')"
    if op == "in":
        return f"({column} IN ({', '.join(_quote(v) for v in value)}))" if value else "(false)"
    if op == "contains":
        return f"({column} LIKE {_like(value)})"
    if op == "icontains":
        return f"(lower({column}) LIKE lower({_like(value)}))"
    symbol = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}.get(op)
    return None if symbol is None else f"({column} {symbol} {_quote(value)})"


def prefilter(project_id: str, where: Node | None, include_expired: bool) -> tuple[str, bool]:
    """(SQL LanceDB applies, whether ``filters.matches`` must still run on the rows it returns)."""
    clauses = [f"project_id = {_quote(project_id)}"]
    if not include_expired:
        today = datetime.now(UTC).date().isoformat()
        clauses.append(f"(expiration_date IS NULL OR expiration_date >= {_quote(today)})")
    residual = False
    items = where.items if isinstance(where, And) else (where,) if where is not None else ()
    for item in items:
        sql = to_sql(item)
        if sql is None:
            residual = True
        else:
            clauses.append(sql)
    return " AND ".join(clauses), residual


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
                pa.field("expiration_date", pa.string(), nullable=True),
                pa.field("immutable", pa.bool_()),
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
            "expiration_date": r.expiration_date,
            "immutable": r.immutable,
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
        clause = f"id IN ({', '.join(_quote(i) for i in ids)})"
        self._retry_commit(lambda: table.delete(clause))

    def delete_project(self, project_id: str) -> int:
        table = self._open()
        clause = f"project_id = {_quote(project_id)}"
        count = int(table.count_rows(clause))
        self._retry_commit(lambda: table.delete(clause))
        return count

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
            expiration_date=row.get("expiration_date"),
            immutable=bool(row.get("immutable")),
            score=score,
        )

    def get(self, memory_id: str, project_id: str) -> MemoryRecord | None:
        clause = f"id = {_quote(memory_id)} AND project_id = {_quote(project_id)}"
        found = self._open().search().where(clause).limit(1).to_list()
        return self._record(found[0]) if found else None

    def search(
        self,
        vector: Sequence[float],
        *,
        project_id: str,
        where: Node | None = None,
        limit: int,
        threshold: float | None = None,
        include_expired: bool = False,
    ) -> list[MemoryRecord]:
        sql, residual = prefilter(project_id, where, include_expired)
        query = self._open().search(list(vector), vector_column_name="vector").distance_type("cosine")
        query = query.where(sql, prefilter=True).limit(POST_FILTER_CANDIDATES if residual else limit)
        results = []
        for row in query.to_list():
            score = 1.0 - float(row["_distance"])
            if threshold is not None and score < threshold:
                continue
            record = self._record(row, score)
            if not residual or filters.matches(where, record):
                results.append(record)
                if len(results) == limit:
                    break
        return results

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
        sql, residual = prefilter(project_id, where, include_expired)
        if not residual:
            return int(self._open().count_rows(sql))
        return len(self._matching(project_id, where, include_expired))

    def _matching(self, project_id: str, where: Node | None, include_expired: bool) -> list[MemoryRecord]:
        sql, residual = prefilter(project_id, where, include_expired)
        table = self._open()
        total = int(table.count_rows(sql))
        rows = table.search().where(sql).limit(max(total, 1)).to_list() if total else []
        records = [self._record(r) for r in rows]
        return [r for r in records if filters.matches(where, r)] if residual else records


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)
