"""``KuzuGraphStore``: one shard of the graph in an embedded Kuzu (or LadybugDB) database file.

Kuzu lets exactly one process open a database file (DESIGN.md #4). The store opens its file
lazily, once per process, and first takes an exclusive ``flock`` on ``<file>.owner``: a second
opener fails at once with a message naming the owner, instead of Kuzu's bare "could not set lock".

A job's changes and the marker saying the job was applied are written in one transaction, so a
process killed mid-write leaves none of them, and a redelivered job finds the marker and writes
nothing twice.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from engram.errors import PermanentError
from engram.graph.port import GraphChanges, GraphEntity, GraphRelation, ScopeIds
from engram.scope import Scope

log = logging.getLogger(__name__)
SCOPE_KEYS = ("user_id", "agent_id", "run_id")
SUFFIX = {"kuzu": ".kuzu", "ladybug": ".lbug"}  # the formats differ: never open one backend's file with the other
# Applied-job markers only matter until the job's SQL row says the graph branch is done (seconds).
APPLIED_MARKER_TTL = timedelta(days=2)
ENTITY_COLUMNS = "e.id, e.name, e.type, e.project_id, e.user_id, e.agent_id, e.run_id, e.embedding, e.created_at"


class KuzuConfig(BaseModel):
    path: Path = Field(description="Directory of the shard files")
    shard: int = Field(0, ge=0, description="Which shard file this store opens")
    backend: Literal["kuzu", "ladybug"] = "kuzu"
    dimensions: int = Field(384, gt=0, description="Size of entity name embeddings")
    # Kuzu's default takes 80% of the machine's memory per database: too much beside the other processes.
    buffer_pool_mb: int = Field(512, gt=0, description="Page cache of the shard's database")
    write_delay_seconds: float = Field(
        0.0, ge=0, description="Test only: pause inside the write transaction (widens the window of crash tests)"
    )


class GraphStoreLocked(RuntimeError):
    """Another process owns this shard file."""


def shard_file(path: Path, shard: int, backend: str) -> Path:
    return Path(path) / f"shard-{shard}{SUFFIX[backend]}"


def acquire_owner_lock(lock_path: Path, db_file: Path) -> int:
    """An exclusive lock for this process's lifetime (the kernel drops it when the process dies)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise GraphStoreLocked(
            f"{db_file} is open in another process ({owner}); only the graph worker of this shard may open it "
            "(DESIGN.md #4: the API and other workers reach the graph through its graph.<n> queue)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
    return fd


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: Any) -> datetime | None:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


class KuzuGraphStore:
    """The ``GraphStore`` of one shard file. Not for sharing between processes: one owner, by design."""

    config_model = KuzuConfig

    def __init__(self, config: KuzuConfig) -> None:
        self.config = config
        self.shard = config.shard
        self.file = shard_file(config.path, config.shard, config.backend)
        self._conn: Any = None
        self._db: Any = None
        self._lock_fd: int | None = None
        self._guard = threading.RLock()

    # -- connection -----------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = acquire_owner_lock(self.file.with_name(self.file.name + ".owner"), self.file)
            try:
                module = importlib.import_module(self.config.backend)
                self._db = module.Database(str(self.file), buffer_pool_size=self.config.buffer_pool_mb * 2**20)
                conn = module.Connection(self._db)
                for statement in self._schema():
                    conn.execute(statement)
                self._check_dimensions(conn)
            except BaseException:
                self._release()
                raise
            self._conn = conn
            log.info("opened %s (shard %d) in pid %d", self.file, self.shard, os.getpid())
        return self._conn

    def _schema(self) -> list[str]:
        return [
            "CREATE NODE TABLE IF NOT EXISTS Entity(id STRING, project_id STRING, user_id STRING, agent_id STRING, "
            f"run_id STRING, name STRING, type STRING, embedding FLOAT[{self.config.dimensions}], "
            "created_at TIMESTAMP, PRIMARY KEY(id))",
            "CREATE REL TABLE IF NOT EXISTS RELATES(FROM Entity TO Entity, relationship STRING, "
            "created_at TIMESTAMP, job_id STRING)",
            "CREATE NODE TABLE IF NOT EXISTS AppliedJob(id STRING, events STRING, applied_at TIMESTAMP, "
            "PRIMARY KEY(id))",
        ]

    def _check_dimensions(self, conn: Any) -> None:
        result = conn.execute("CALL table_info('Entity') RETURN name, type")
        while result.has_next():
            name, kind = result.get_next()
            expected = f"FLOAT[{self.config.dimensions}]"
            if name == "embedding" and kind != expected:
                raise PermanentError(
                    f"{self.file} holds {kind} entity embeddings but the embedder gives {expected}; "
                    "a graph built with another embedder needs a new graph path"
                )

    def _rows(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        with self._guard:
            result = self._connection().execute(query, params or {})
            rows = []
            while result.has_next():
                rows.append(result.get_next())
            return rows

    def _release(self) -> None:
        self._conn = None
        self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def close(self) -> None:
        with self._guard:
            if self._conn is not None:
                self._conn.close()
                self._db.close()
            self._release()

    def ping(self) -> None:
        self._rows("RETURN 1")

    # -- reads --------------------------------------------------------------------------------
    @staticmethod
    def _match(alias: str, project_id: str, ids: ScopeIds) -> tuple[str, dict[str, Any]]:
        clauses = [f"{alias}.project_id = $project_id"]
        params: dict[str, Any] = {"project_id": project_id}
        for key in SCOPE_KEYS:
            if key in ids:
                clauses.append(f"{alias}.{key} = ${key}")
                params[key] = ids[key]
        return " AND ".join(clauses), params

    @staticmethod
    def _entity(row: list[Any], score: float | None = None) -> GraphEntity:
        return GraphEntity(
            id=row[0],
            name=row[1],
            type=row[2],
            scope=Scope(row[3], row[4], row[5], row[6]),
            embedding=list(row[7] or []),
            created_at=_aware(row[8]),
            score=score,
        )

    def entities(self, project_id: str, ids: ScopeIds, *, limit: int = 10_000) -> list[GraphEntity]:
        where, params = self._match("e", project_id, ids)
        rows = self._rows(
            f"MATCH (e:Entity) WHERE {where} RETURN {ENTITY_COLUMNS} ORDER BY e.created_at, e.id LIMIT $limit",
            {**params, "limit": limit},
        )
        return [self._entity(r) for r in rows]

    def similar_entities(
        self, project_id: str, ids: ScopeIds, vector: Sequence[float], *, threshold: float, limit: int
    ) -> list[GraphEntity]:
        where, params = self._match("e", project_id, ids)
        rows = self._rows(
            f"MATCH (e:Entity) WHERE {where} "
            f"WITH e, array_cosine_similarity(e.embedding, CAST($vector AS FLOAT[{self.config.dimensions}])) AS score "
            f"WHERE score >= $threshold RETURN {ENTITY_COLUMNS}, score ORDER BY score DESC, e.id LIMIT $limit",
            {**params, "vector": [float(v) for v in vector], "threshold": threshold, "limit": limit},
        )
        return [self._entity(r, float(r[9])) for r in rows]

    def relations(
        self, project_id: str, ids: ScopeIds, *, entity_ids: Sequence[str] | None = None, limit: int = 10_000
    ) -> list[GraphRelation]:
        where, params = self._match("a", project_id, ids)
        if entity_ids is not None:
            where += " AND (a.id IN $entity_ids OR b.id IN $entity_ids)"
            params["entity_ids"] = list(entity_ids)
        rows = self._rows(
            f"MATCH (a:Entity)-[r:RELATES]->(b:Entity) WHERE {where} "
            "RETURN a.id, r.relationship, b.id, a.name, b.name, a.project_id, a.user_id, a.agent_id, a.run_id, "
            "r.created_at ORDER BY r.created_at, a.name, r.relationship, b.name LIMIT $limit",
            {**params, "limit": limit},
        )
        return [
            GraphRelation(
                source_id=r[0],
                relationship=r[1],
                destination_id=r[2],
                source=r[3],
                destination=r[4],
                scope=Scope(r[5], r[6], r[7], r[8]),
                created_at=_aware(r[9]),
            )
            for r in rows
        ]

    def applied(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows("MATCH (j:AppliedJob) WHERE j.id = $id RETURN j.events", {"id": job_id})
        return json.loads(rows[0][0]) if rows else None

    # -- writes -------------------------------------------------------------------------------
    def apply(self, job_id: str, changes: GraphChanges) -> None:
        now = _naive_utc(datetime.now(UTC))
        entities = [
            {"id": e.id, "name": e.name, "type": e.type, "embedding": [float(v) for v in e.embedding]}
            for e in changes.entities
        ]
        with self._guard:
            conn = self._connection()
            conn.execute("BEGIN TRANSACTION")
            try:
                # One statement per kind (UNWIND), not per row: a statement costs milliseconds.
                if entities:
                    conn.execute(
                        "UNWIND $rows AS row MERGE (e:Entity {id: row.id}) ON CREATE SET "
                        "e.project_id = $project_id, e.user_id = $user_id, e.agent_id = $agent_id, "
                        "e.run_id = $run_id, e.name = row.name, e.type = row.type, e.embedding = row.embedding, "
                        "e.created_at = $now",
                        {"rows": entities, **changes.scope.as_filter(), "now": now},
                    )
                if changes.deleted:
                    conn.execute(
                        "UNWIND $rows AS row MATCH (a:Entity {id: row.source})-[r:RELATES]->"
                        "(b:Entity {id: row.destination}) WHERE r.relationship = row.relationship DELETE r",
                        {"rows": [self._edge(r) for r in changes.deleted]},
                    )
                if self.config.write_delay_seconds:
                    time.sleep(self.config.write_delay_seconds)
                if changes.added:
                    conn.execute(
                        "UNWIND $rows AS row MATCH (a:Entity {id: row.source}), (b:Entity {id: row.destination}) "
                        "MERGE (a)-[r:RELATES {relationship: row.relationship}]->(b) "
                        "ON CREATE SET r.created_at = $now, r.job_id = $job_id",
                        {"rows": [self._edge(r) for r in changes.added], "now": now, "job_id": job_id},
                    )
                conn.execute(
                    "MERGE (j:AppliedJob {id: $id}) ON CREATE SET j.events = $events, j.applied_at = $now",
                    {"id": job_id, "events": json.dumps(changes.events()), "now": now},
                )
                conn.execute(
                    "MATCH (j:AppliedJob) WHERE j.applied_at < $cutoff DELETE j", {"cutoff": now - APPLIED_MARKER_TTL}
                )
            except BaseException:
                # A failed statement has already rolled the transaction back; this is for the others.
                with suppress(RuntimeError):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _edge(relation: GraphRelation) -> dict[str, Any]:
        return {
            "source": relation.source_id,
            "destination": relation.destination_id,
            "relationship": relation.relationship,
        }

    def clear(self, project_id: str, ids: ScopeIds) -> int:
        where, params = self._match("e", project_id, ids)
        with self._guard:
            count = int(self._rows(f"MATCH (e:Entity) WHERE {where} RETURN count(e)", params)[0][0])
            if count:
                self._rows(f"MATCH (e:Entity) WHERE {where} DETACH DELETE e", params)
            return count
