"""``LanceVectorStore``: the embedded, on-disk store (LanceDB).

Safe with the API and several worker processes at once: LanceDB commits are atomic and versioned,
reads check for the latest version on every query (``read_consistency_interval=0``), and writers
that lose a commit race retry here. Filters on scalar columns run inside LanceDB (prefilter,
``lance_sql``); dates, categories and metadata are checked in Python with ``engram.filters.matches``.

Hybrid search uses LanceDB's native full-text index on ``memory`` (BM25). Measured on lancedb 0.40
with several writer processes: rows written after the index was built are found too (LanceDB
searches unindexed rows by a flat scan), upserted rows answer with their new text only, deleted
rows never come back, and racing ``optimize()`` calls only ever lose a retryable commit conflict.
Correctness therefore never waits for the index; the upkeep after each write (``lance_upkeep``:
tiered compaction of the small fragments one-job-per-commit writes leave, new rows into the indexes,
old versions out) only keeps queries short. A process that can hand it to a worker does
(``hand_off_upkeep``). Reconcile's lookups (``nearest_each``) and appends go through pylance's own read and
write path (``lance_native``), as do the searches of the process that serves them (``search_with_pylance``:
the API); the rest goes through lancedb.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field

from engram import filters
from engram.batching import BatchingRunner
from engram.filters import Node
from engram.ports import MemoryRecord, SearchMode, VectorStore
from engram.scope import Scope
from engram.vectorstores import hybrid, lance_upkeep
from engram.vectorstores.lance_native import NativeReader
from engram.vectorstores.lance_sql import prefilter, quote, to_sql

__all__ = ["LanceConfig", "LanceVectorStore", "prefilter", "to_sql"]

log = logging.getLogger(__name__)
T = TypeVar("T")

COMMIT_RETRIES = 20
APPEND_BATCH_ROWS = 4096  # rows per shared append commit, at most
# When part of a filter is checked in Python, this many nearest candidates are examined at most.
POST_FILTER_CANDIDATES = 10_000
# Up to this many memories in the filter, ``nearest_each`` and the API's searches rank them here from one read: the
# table has no vector index, so Lance's vector search ranks the same rows by the same cosine, at more CPU
# (bench/: a scope of a few memories among 1,500, 3 facts: 11.0 -> 6.9 ms). A larger filter goes to Lance,
# which ranks as it reads instead of holding every vector.
RANK_HERE_MAX_ROWS = 2_000
TEXT_COLUMN = "memory"
# The scope columns every search filters on. Without an index LanceDB scans the whole table for them
# (bench/: p50 89 ms at 100k memories over 1,000 users; 14 ms with these). A bitmap suits the few
# projects; a B-tree the many users, agents and runs.
SCALAR_INDEXES = {"project_id": "BITMAP", "user_id": "BTREE", "agent_id": "BTREE", "run_id": "BTREE", "id": "BTREE"}
# A write's rows are stored in scope order, and compaction keeps the order within each fragment, so a bulk
# write leaves each scope's memories side by side. A search reads one scope's rows, and scattered rows cost
# it: hybrid search at 100k memories over 1,000 users, pylance reads, p50 13.1 against 9.7 ms with the rows
# of each 5,000-row write in this order, 7.7 with the whole table in it (bench/ search, loaded in 5,000s).
SCOPE_ORDER = [(column, "ascending") for column in ("project_id", "user_id", "agent_id", "run_id")]
# The storage format of new tables. 2.1 reads scattered rows (one scope's memories among everyone's) faster
# than 2.0: hybrid search at 100k memories, the same data in both, queries interleaved: p50 18.7 against
# 22.4 ms, p95 27.6 against 35.7 ms.
# Tables made before keep the format they were written in.
DATA_STORAGE_VERSION = "2.1"


class LanceConfig(BaseModel):
    path: Path
    table: str = "memories"
    dimensions: int = Field(384, gt=0)
    # Defaults mirror config.settings.VectorStoreSettings (which the container always passes).
    search_mode: SearchMode = Field("hybrid", description="Mode of a search with text that does not name one")
    hybrid_alpha: float = Field(0.4, ge=0, le=1, description="Vector weight in hybrid search (1 = vector only)")
    runtime_threads: int | None = Field(
        None, gt=0, description="Threads of Lance's async runtime in this process (None: one per core)"
    )


class LanceVectorStore:
    config_model = LanceConfig

    def __init__(self, config: LanceConfig) -> None:
        self.config = config
        self.dimensions = config.dimensions
        self._table: Any = None
        self._lock = threading.Lock()
        self._keyword_pool: tuple[int, ThreadPoolExecutor] | None = None
        self._upkeep_paused_until = 0.0
        self._cleaned_at = -float("inf")
        self._hand_off: Callable[[], bool] | None = None
        self._searches_natively = False
        self._native: NativeReader | None = None
        # The appends of this process's threads that arrive together share one commit (engram/batching.py).
        self._appends: BatchingRunner[dict[str, Any], None] = BatchingRunner(
            self._append_batch, max_items=APPEND_BATCH_ROWS, name="engram-lance-append"
        )

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
                if self.config.runtime_threads is not None:
                    # Read once, when lancedb (and pylance) build their runtime: on this process's first use.
                    os.environ.setdefault("TOKIO_WORKER_THREADS", str(self.config.runtime_threads))
                import lancedb

                self.config.path.mkdir(parents=True, exist_ok=True)
                db = lancedb.connect(str(self.config.path), read_consistency_interval=timedelta(0))
                try:
                    table = db.create_table(
                        self.config.table,
                        schema=self._schema(),
                        exist_ok=True,
                        storage_options={"new_table_data_storage_version": DATA_STORAGE_VERSION},
                    )
                except (ValueError, OSError, RuntimeError):
                    # Another process created it between our check and our create.
                    table = db.open_table(self.config.table)
                width = table.schema.field("vector").type.list_size
                if width != self.dimensions:
                    raise ValueError(
                        f"vector table {self.config.table!r} holds {width}-d vectors; embedder gives "
                        f"{self.dimensions}-d. Use another table or re-embed."
                    )
                self._ensure_indexes(table)
                self._table = table
        return self._table

    def _ensure_indexes(self, table: Any) -> None:
        """The BM25 index hybrid search needs and the scope columns' scalar indexes; tables made before
        either existed get them on first open. Rows written later are found by a flat scan of the unindexed
        part until ``optimize()`` folds them in."""
        from lancedb.index import FTS, Bitmap, BTree

        wanted: dict[str, Any] = {TEXT_COLUMN: FTS(with_position=False)}
        wanted.update({col: Bitmap() if kind == "BITMAP" else BTree() for col, kind in SCALAR_INDEXES.items()})
        for column, config in wanted.items():
            for attempt in range(COMMIT_RETRIES):
                if any(column in ix.columns for ix in table.list_indices()):
                    break
                try:
                    table.create_index(column, config=config, replace=False)
                    break
                except (OSError, RuntimeError, ValueError) as exc:
                    # Several processes opening a fresh table race to build it: one wins, the rest see it.
                    if "already exists" not in str(exc) and "onflict" not in str(exc):
                        raise
                    time.sleep(0.01 * (attempt + 1))

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

    def close(self) -> None:
        """Nothing to release but the handle and the keyword threads; the next use reopens both."""
        self._table = None
        self._native = None
        pool, self._keyword_pool = self._keyword_pool, None
        if pool is not None and pool[0] == os.getpid():
            pool[1].shutdown(wait=True)

    def _beside(self) -> ThreadPoolExecutor:
        """Threads for the keyword half of hybrid search. LanceDB releases the GIL, so the answer waits
        for the slower query instead of both (bench/: -7 ms p50 at 100k memories). Made per process:
        a pool inherited through fork has no threads behind it."""
        if self._keyword_pool is None or self._keyword_pool[0] != os.getpid():
            self._keyword_pool = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="lance-keyword"))
        return self._keyword_pool[1]

    def optimize(self) -> None:
        """Compact every small fragment, fold every row into the indexes, drop old versions: what a bulk
        load or an operator asks for. The writes' own upkeep does the same a tier at a time."""
        self._upkeep(full=True)

    def _upkeep(self, *, full: bool = False) -> None:
        """Safe from any process at any time: a commit race with a writer fails retryably and is simply
        left for a later check (the writer's change is never lost either way)."""
        now = time.monotonic()
        if not full and now < self._upkeep_paused_until:
            return
        self._open()
        may_clean = now - self._cleaned_at >= lance_upkeep.VERSIONS_CLEANUP_EVERY.total_seconds()
        try:
            done = lance_upkeep.upkeep(self._dataset_dir(), full=full, may_clean=may_clean)
        except (OSError, RuntimeError, ValueError) as exc:
            if "onflict" in str(exc) or "etry" in str(exc):
                # Another process compacted or wrote the same fragments first: the next write checks again.
                log.info("lance upkeep lost a commit race; a later check does it: %s", exc)
                return
            self._upkeep_paused_until = now + lance_upkeep.PAUSE_AFTER_FAILURE.total_seconds()
            raise
        if lance_upkeep.CLEANED in done:
            self._cleaned_at = now

    def _dataset_dir(self) -> Path:
        return self.config.path / f"{self.config.table}.lance"

    def hand_off_upkeep(self, hand_off: Callable[[], bool]) -> None:
        """After each write, ask ``hand_off`` to have the upkeep run elsewhere (it answers whether it did)
        instead of running it here. Upkeep needs ``pylance``, ~66 MB resident in every process that loads
        it (bench/, an LLM worker's smaps), so the processes that only write hand it to one worker."""
        self._hand_off = hand_off

    def upkeep(self) -> None:
        """Do the upkeep that is due now, here (the task a hand-off asks for calls this)."""
        self._upkeep()

    def search_with_pylance(self) -> None:
        """Answer ``search`` through pylance's own query path from now on (``lance_native``): what the
        process serving searches asks for. Reconciliation's lookups and every write stay on lancedb."""
        self._searches_natively = True

    def _native_reader(self) -> NativeReader | None:
        """pylance for searches, where ``search_with_pylance`` asked for it."""
        return self._pylance() if self._searches_natively else None

    def _pylance(self) -> NativeReader:
        """The table through pylance: what reconcile's lookups and appends always use (lancedb's query and
        write layer costs each call a few ms of CPU more: bench/, 3 rows appended 7.1 against 4.1 ms)."""
        if self._native is None:
            self._open()  # creates the table if this process is the first to use it
            self._native = NativeReader(self._dataset_dir(), TEXT_COLUMN)
        return self._native

    def _after_write(self) -> None:
        """Upkeep when due (``lance_upkeep``), checked after every write: the check reads a manifest and a
        directory listing (under a millisecond at 100k memories), while every small fragment left to pile up
        costs each query (5 ms over 10 one-job fragments, 19 ms over 100)."""
        if self._hand_off is not None:
            try:
                if self._hand_off():
                    return
            except Exception as exc:  # e.g. Redis or the broker down: the write has committed; upkeep runs here
                log.warning("could not hand lance upkeep to a worker; running it here: %s", exc)
        try:
            self._upkeep()
        except (OSError, RuntimeError, ValueError) as exc:
            # Upkeep only: the write itself has committed; upkeep pauses, then a later write's check retries.
            log.warning("lance upkeep failed after a committed write; the next check retries: %s", exc)

    def _read(self, query: Callable[[], T]) -> T:
        """Run a read, once more on the latest version if another process's optimize() removed the files
        of the version it started on mid-read (lance-format/lance#6607: no reader leases yet)."""
        try:
            return query()
        except (RuntimeError, ValueError) as exc:  # lancedb raises RuntimeError, pylance ArrowInvalid
            if "Not found" not in str(exc):
                raise
            log.info("lance read lost its version to a cleanup; reading the latest: %s", exc)
            self._open().checkout_latest()  # a native query checks for the latest version itself
            return query()

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
        def merge(table: Any, data: pa.Table) -> object:
            return table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)

        self._write(records, merge)

    def insert(self, records: Sequence[MemoryRecord]) -> None:
        """An append: merge_insert joins the batch with every id in the table, which costs 2-5x the
        append and grows with the unindexed fragments between upkeeps (3 rows into 2,000 in 10-30 small
        fragments: 12-31 against 3-6 ms CPU). Appends that arrive together from this process's threads
        are one commit, one fragment (bench/: LanceDB's own CPU 11.5-14.7 -> 8.6-10.7 ms per conversation); each
        call returns once its rows are committed, and raises if they were not."""
        if records:
            self._appends.run([self._row(r) for r in records])

    def _append_batch(self, rows: list[dict[str, Any]]) -> list[None]:
        native = self._pylance()
        data = pa.Table.from_pylist(rows, schema=self._schema()).sort_by(SCOPE_ORDER)
        self._retry_commit(lambda: native.append(data))
        self._after_write()
        return [None] * len(rows)

    def _write(self, records: Sequence[MemoryRecord], commit: Callable[[Any, pa.Table], object]) -> None:
        if not records:
            return
        table = self._open()
        data = pa.Table.from_pylist([self._row(r) for r in records], schema=self._schema()).sort_by(SCOPE_ORDER)
        self._retry_commit(lambda: commit(table, data))
        self._after_write()

    def delete(self, ids: Sequence[str], *, project_id: str | None = None) -> None:
        if not ids:
            return
        table = self._open()
        clause = f"id IN ({', '.join(quote(i) for i in ids)})"
        if project_id is not None:
            clause += f" AND project_id = {quote(project_id)}"
        self._retry_commit(lambda: table.delete(clause))
        self._after_write()

    def delete_project(self, project_id: str) -> int:
        table = self._open()
        clause = f"project_id = {quote(project_id)}"
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
        clause = f"id = {quote(memory_id)} AND project_id = {quote(project_id)}"
        found = self._read(self._open().search().where(clause).limit(1).to_list)
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
        query_text: str | None = None,
        mode: SearchMode | None = None,
        alpha: float | None = None,
        include_vectors: bool = False,
    ) -> list[MemoryRecord]:
        mode = hybrid.resolve_mode(mode, query_text, self.config.search_mode)
        weight = hybrid.resolve_alpha(alpha, self.config.hybrid_alpha)
        if limit <= 0:
            return []
        sql, residual = prefilter(project_id, where, include_expired)
        rest = where if residual else None
        if mode == "vector":
            found = self._nearest(vector, sql, rest, limit, include_vectors)
            return [r for r in found if threshold is None or (r.score or 0.0) >= threshold]
        assert query_text is not None  # resolve_mode guarantees it
        return self._hybrid(vector, query_text, sql, rest, limit, weight, threshold, include_vectors)

    def nearest_each(
        self,
        vectors: Sequence[Sequence[float]],
        *,
        project_id: str,
        where: Node | None = None,
        limit: int,
        include_vectors: bool = False,
    ) -> list[list[MemoryRecord]]:
        sql, residual = prefilter(project_id, where, False)
        if residual or limit <= 0 or not vectors:
            return hybrid.nearest_one_by_one(
                self, vectors, project_id=project_id, where=where, limit=limit, include_vectors=include_vectors
            )
        ranked = self._rank_here(vectors, sql, limit, include_vectors)
        if ranked is not None:
            return ranked
        if len(vectors) < 2:
            return hybrid.nearest_one_by_one(
                self, vectors, project_id=project_id, where=where, limit=limit, include_vectors=include_vectors
            )
        # One query with several vectors: LanceDB filters once and ranks per vector (``query_index``).
        query = self._open().search([list(v) for v in vectors], vector_column_name="vector").distance_type("cosine")
        rows = query.where(sql, prefilter=True).select(self._columns(include_vectors, "_distance")).limit(limit)
        out: list[list[MemoryRecord]] = [[] for _ in vectors]
        for row in self._read(rows.to_list):
            out[int(row["query_index"])].append(self._record(row, 1.0 - float(row["_distance"])))
        for found in out:
            found.sort(key=lambda r: -(r.score or 0.0))
        return out

    def _rank_here(
        self, vectors: Sequence[Sequence[float]], sql: str, limit: int, include_vectors: bool
    ) -> list[list[MemoryRecord]] | None:
        """``nearest_each`` from one read of the rows ``sql`` selects, ranked by cosine here; None when there
        are more than ``RANK_HERE_MAX_ROWS`` of them."""
        native = self._pylance()
        rows = self._read(lambda: _rows_to_rank(native, sql, self._columns(True)))
        if rows is None:
            return None
        if rows.num_rows == 0:
            return [[] for _ in vectors]
        order, cosine = _cosine_ranking(rows, vectors, limit)
        picked = sorted({int(i) for i in order.ravel()})
        records = dict(zip(picked, rows.take(picked).to_pylist(), strict=True))
        out: list[list[MemoryRecord]] = []
        for q, top in enumerate(order):
            found = []
            for i in top:
                record = self._record(records[int(i)], float(cosine[q, i]))
                if not include_vectors:
                    record.vector = []
                found.append(record)
            out.append(found)
        return out

    def _nearest_ids(
        self, native: NativeReader, vector: Sequence[float], sql: str, limit: int, dataset: Any
    ) -> list[dict[str, Any]]:
        """``id``, ``_distance`` (cosine) and ``_rowid`` of the ``limit`` rows ``sql`` selects nearest to
        ``vector``, best first. A scope of up to ``RANK_HERE_MAX_ROWS`` is ranked here from one read of its ids
        and vectors, as ``nearest_each`` does (bench/ API search at 100k memories over 1,000 users, the same top
        10 for every query: p50 19.0-19.5 -> 16.6-16.8 ms); a larger one by Lance, after a read cut at one row
        past the limit."""
        rows = _rows_to_rank(native, sql, ["id", "vector"], dataset, with_row_id=True)
        if rows is None:
            return native.nearest(vector, sql, ["id", "_distance"], limit, dataset)
        if rows.num_rows == 0:
            return []
        order, cosine = _cosine_ranking(rows, [vector], limit)
        ids, row_ids = rows.column("id").to_pylist(), rows.column("_rowid").to_pylist()
        return [{"id": ids[i], "_distance": 1.0 - float(cosine[0, i]), "_rowid": row_ids[i]} for i in order[0]]

    def _columns(self, with_vectors: bool, score: str | None = None) -> list[str]:
        # A search never needs the 384 floats of every hit unless the caller compares vectors (reconcile);
        # reading them back costs more than the search itself (bench/: 8 against 12 ms at 100k).
        return [f.name for f in self._schema() if with_vectors or f.name != "vector"] + ([score] if score else [])

    def _nearest(
        self, vector: Sequence[float], sql: str, residual: Node | None, limit: int, with_vectors: bool
    ) -> list[MemoryRecord]:
        """Up to ``limit`` nearest matches, score = cosine similarity."""
        columns, wanted = self._columns(with_vectors, "_distance"), POST_FILTER_CANDIDATES if residual else limit
        native = self._native_reader()
        if native is not None and residual is None:
            rows = self._read(lambda: self._nearest_rows(native, vector, sql, columns, wanted))
        elif native is not None:
            rows = self._read(lambda: native.nearest(vector, sql, columns, wanted))
        else:
            query = self._open().search(list(vector), vector_column_name="vector").distance_type("cosine")
            rows = self._read(query.where(sql, prefilter=True).select(columns).limit(wanted).to_list)
        records = (self._record(row, 1.0 - float(row["_distance"])) for row in rows)
        return _first_matching(records, residual, limit)

    def _nearest_rows(
        self, native: NativeReader, vector: Sequence[float], sql: str, columns: list[str], limit: int
    ) -> list[dict[str, Any]]:
        """The nearest rows' ``columns`` (``_distance`` among them) from one version: ranked on ids first."""
        dataset = native.latest()
        nearest = self._nearest_ids(native, vector, sql, limit, dataset)
        if not nearest:
            return []
        found = native.rows(dataset, [r["_rowid"] for r in nearest], [c for c in columns if c != "_distance"])
        return [row | {"_distance": hit["_distance"]} for row, hit in zip(found, nearest, strict=True)]

    def _keyword(
        self, text: str, sql: str, residual: Node | None, limit: int, with_vectors: bool
    ) -> list[MemoryRecord]:
        """Up to ``limit`` best BM25 matches of ``text``, score = BM25."""
        columns, wanted = self._columns(with_vectors, "_score"), POST_FILTER_CANDIDATES if residual else limit
        native = self._native_reader()
        if native is not None:
            rows = self._read(lambda: native.keyword(text, sql, columns, wanted))
        else:
            query = self._open().search(text, query_type="fts", fts_columns=TEXT_COLUMN)
            rows = self._read(query.where(sql, prefilter=True).select(columns).limit(wanted).to_list)
        records = (self._record(row, float(row["_score"])) for row in rows)
        return _first_matching(records, residual, limit)

    def _hybrid(
        self,
        vector: Sequence[float],
        text: str,
        sql: str,
        residual: Node | None,
        limit: int,
        alpha: float,
        threshold: float | None,
        include_vectors: bool,
    ) -> list[MemoryRecord]:
        native = self._native_reader()
        if native is not None and residual is None:
            return self._read(
                lambda: self._hybrid_by_ids(native, vector, text, sql, limit, alpha, threshold, include_vectors)
            )
        wanted = hybrid.candidates_for(limit)
        # A keyword hit's relevance to the query is its cosine similarity, which the threshold is about:
        # hits the vector ranking did not bring need their vectors to tell it.
        with_vectors = include_vectors or threshold is not None
        keyword = self._beside().submit(self._keyword, text, sql, residual, wanted, with_vectors) if alpha < 1 else None
        by_vector = self._nearest(vector, sql, residual, wanted, include_vectors) if alpha > 0 else []
        by_keyword = keyword.result() if keyword is not None else []
        similarity = {r.id: r.score or 0.0 for r in by_vector}
        fused = hybrid.relative_score_fusion(similarity, {r.id: r.score or 0.0 for r in by_keyword}, alpha)
        records = {r.id: r for r in by_keyword} | {r.id: r for r in by_vector}
        kept = []
        for record in records.values():
            if threshold is not None:
                cosine = similarity.get(record.id)
                if cosine is None:
                    cosine = hybrid.cosine(vector, record.vector)
                if cosine < threshold:
                    continue
            if not include_vectors:
                record.vector = []
            record.score = fused[record.id]
            kept.append(record)
        return sorted(kept, key=lambda r: (-(r.score or 0.0), r.id))[:limit]

    def _hybrid_by_ids(
        self,
        native: NativeReader,
        vector: Sequence[float],
        text: str,
        sql: str,
        limit: int,
        alpha: float,
        threshold: float | None,
        include_vectors: bool,
    ) -> list[MemoryRecord]:
        """``_hybrid`` ranking on ids and scores alone, then reading only the winners' rows: otherwise each
        ranking reads every column of its 50 candidates, ~100 scattered rows for 10 answers (bench/ search at
        100k memories, the same top 10 for 300 of 300 queries: p50 13.1 -> 11.5, p95 19.0 -> 15.7 ms)."""
        wanted = hybrid.candidates_for(limit)
        dataset = native.latest()  # both rankings and the read of the winners see one version
        ids = ["id", "_score"]
        keyword = self._beside().submit(native.keyword, text, sql, ids, wanted, dataset) if alpha < 1 else None
        by_vector = self._nearest_ids(native, vector, sql, wanted, dataset) if alpha > 0 else []
        by_keyword = keyword.result() if keyword is not None else []
        similarity = {r["id"]: 1.0 - float(r["_distance"]) for r in by_vector}
        fused = hybrid.relative_score_fusion(similarity, {r["id"]: float(r["_score"]) for r in by_keyword}, alpha)
        row_ids = {r["id"]: r["_rowid"] for r in by_keyword} | {r["id"]: r["_rowid"] for r in by_vector}
        if threshold is not None:
            # As in _hybrid: the keyword hits the vector ranking did not bring need their vectors to tell
            # their cosine similarity, which the threshold is about.
            unscored = [row_ids[i] for i in fused if i not in similarity]
            for row in native.rows(dataset, unscored, ["id", "vector"]) if unscored else []:
                similarity[row["id"]] = hybrid.cosine(vector, row["vector"])
            fused = {i: score for i, score in fused.items() if similarity[i] >= threshold}
        winners = sorted(fused, key=lambda i: (-fused[i], i))[:limit]
        rows = native.rows(dataset, [row_ids[i] for i in winners], self._columns(include_vectors))
        records = [self._record(row, fused[row["id"]]) for row in rows]
        return sorted(records, key=lambda r: (-(r.score or 0.0), r.id))

    def _matching(self, project_id: str, where: Node | None, include_expired: bool) -> list[MemoryRecord]:
        sql, residual = prefilter(project_id, where, include_expired)
        table = self._open()

        def rows() -> list[dict[str, Any]]:
            total = int(table.count_rows(sql))
            return table.search().where(sql).limit(max(total, 1)).to_list() if total else []

        records = [self._record(r) for r in self._read(rows)]
        return [r for r in records if filters.matches(where, r)] if residual else records

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


def _norms(vectors: np.ndarray) -> np.ndarray:
    return np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)  # type: ignore[no-any-return]


def _rows_to_rank(
    native: NativeReader, sql: str, columns: list[str], dataset: Any = None, *, with_row_id: bool = False
) -> pa.Table | None:
    """The rows ``sql`` selects, to be ranked here; None when there are more than ``RANK_HERE_MAX_ROWS`` (the
    read stops one row past it)."""
    rows: pa.Table = native.filtered(sql, columns, RANK_HERE_MAX_ROWS + 1, dataset, with_row_id=with_row_id)
    return None if rows.num_rows > RANK_HERE_MAX_ROWS else rows


def _cosine_ranking(rows: pa.Table, vectors: Sequence[Sequence[float]], limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the ``limit`` rows nearest to each vector, best first, and every row's cosine
    similarity to each (vectors × rows). Among equal scores the earlier row first, as Lance's ranking keeps them."""
    stored = rows.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False)
    stored = stored.reshape(rows.num_rows, -1).astype("float32", copy=False)
    asked = np.asarray(vectors, dtype="float32")
    cosine = (asked / _norms(asked)) @ (stored / _norms(stored)).T
    return np.argsort(-cosine, axis=1, kind="stable")[:, :limit], cosine


def _first_matching(records: Any, residual: Node | None, limit: int) -> list[MemoryRecord]:
    kept: list[MemoryRecord] = []
    for record in records:
        if residual is None or filters.matches(residual, record):
            kept.append(record)
            if len(kept) == limit:
                break
    return kept


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


if TYPE_CHECKING:  # mypy proves the adapter matches the port
    _port: type[VectorStore] = LanceVectorStore
