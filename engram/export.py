"""Export and import of a project's memories, with ids, metadata, history and timestamps.

The format is JSON Lines: a header line, then one memory per line (with its vector and history).
``engram export`` / ``engram import`` use it for back-up and restore; the API's export job returns
the same memory objects (without vectors).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np

from config.container import Container
from engram.filters import Node
from engram.ports import MemoryRecord
from engram.scope import Scope
from engram.sql.history import HistoryChange

FORMAT = "engram-export"
VERSION = 1


def memory_document(c: Container, record: MemoryRecord, *, with_vector: bool) -> dict[str, Any]:
    s = record.scope
    doc: dict[str, Any] = {
        "id": record.id,
        "memory": record.memory,
        "hash": record.hash,
        "user_id": s.user_id or None,
        "agent_id": s.agent_id or None,
        "run_id": s.run_id or None,
        "app_id": record.app_id or None,
        "metadata": record.metadata,
        "categories": record.categories,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "expiration_date": record.expiration_date,
        "immutable": record.immutable,
        "history": [h.model_dump(mode="json") for h in c.history.for_memory(s.project_id, record.id)],
    }
    if with_vector:
        doc["vector"] = base64.b64encode(np.asarray(record.vector, dtype="<f4").tobytes()).decode()
    return doc


def iter_export(c: Container, project_id: str, where: Node | None = None, *, with_vectors: bool) -> Iterator[dict]:
    records = c.vector_store.list(project_id=project_id, where=where, limit=10**9, include_expired=True)
    for record in sorted(records, key=lambda r: (r.created_at, r.id)):
        yield memory_document(c, record, with_vector=with_vectors)


def header(c: Container, project_id: str, count: int) -> dict[str, Any]:
    project = c.tenancy.project(project_id) or {}
    return {
        "format": FORMAT,
        "version": VERSION,
        "project_id": project_id,
        "project_name": project.get("name"),
        "org_id": project.get("org_id"),
        "exported_at": datetime.now(UTC).isoformat(),
        "embedder": {"model": c.settings.embedder.model, "dimensions": c.settings.embedder.dimensions},
        "count": count,
    }


def write_export(c: Container, project_id: str, out: IO[str]) -> int:
    documents = list(iter_export(c, project_id, with_vectors=True))
    out.write(json.dumps(header(c, project_id, len(documents))) + "\n")
    for doc in documents:
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return len(documents)


def read_export(lines: Iterable[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    iterator = (line for line in lines if line.strip())
    head = json.loads(next(iterator))
    if head.get("format") != FORMAT or head.get("version") != VERSION:
        raise ValueError(f"not an {FORMAT} v{VERSION} file")
    return head, [json.loads(line) for line in iterator]


def import_documents(c: Container, project_id: str, head: dict[str, Any], docs: list[dict[str, Any]]) -> int:
    """Restore memories and history as exported. Re-embeds only if the embedder's dimensions differ."""
    same_space = head.get("embedder", {}).get("dimensions") == c.settings.embedder.dimensions
    vectors = [_vector(d) for d in docs] if same_space else c.embedder.embed([d["memory"] for d in docs])
    records = [
        MemoryRecord(
            id=d["id"],
            memory=d["memory"],
            hash=d["hash"],
            scope=Scope.of(project_id, d.get("user_id"), d.get("agent_id"), d.get("run_id")),
            vector=list(vector),
            created_at=datetime.fromisoformat(d["created_at"]),
            updated_at=datetime.fromisoformat(d["updated_at"]),
            metadata=d.get("metadata") or {},
            app_id=d.get("app_id") or "",
            categories=d.get("categories") or [],
            expiration_date=d.get("expiration_date"),
            immutable=bool(d.get("immutable")),
        )
        for d, vector in zip(docs, vectors, strict=True)
    ]
    for start in range(0, len(records), 500):
        c.vector_store.upsert(records[start : start + 500])
    for d in docs:
        for h in d.get("history", []):
            change = HistoryChange(
                h["id"],
                h["memory_id"],
                h["old_memory"],
                h["new_memory"],
                h["event"],
                actor_id=h.get("actor_id"),
                role=h.get("role"),
                job_id=h.get("job_id"),
            )
            c.history.record(project_id, [change], at=datetime.fromisoformat(h["created_at"]))
    return len(records)


def _vector(doc: dict[str, Any]) -> list[float]:
    return np.frombuffer(base64.b64decode(doc["vector"]), dtype="<f4").tolist()
