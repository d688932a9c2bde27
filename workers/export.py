"""Task: produce a memory export requested through the API."""

from __future__ import annotations

from celery import Task

from engram import export, memories
from schemas.memories import ScopeFields
from workers import runtime
from workers.celery_app import app


def export_work(export_id: str) -> None:
    c = runtime.container()
    row = c.exports.get_by_id(export_id)
    if row is None or row["status"] != "PENDING":
        return  # unknown, or a redelivery of an export already produced
    request = row["request"]
    ids = ScopeFields.model_validate(request)
    where = memories.build_where(request.get("filters"), ids)
    produced = export.collect(c, row["project_id"], where, with_vectors=False)
    c.exports.finish(export_id, result={"schema": request.get("schema"), **produced.result()})


@app.task(bind=True, name="engram.export", max_retries=3, default_retry_delay=5)
def export_memories(self: Task, export_id: str) -> None:
    try:
        export_work(export_id)
    except Exception as exc:  # recorded on the export, then retried a few times
        if self.request.retries >= (self.max_retries or 0):
            runtime.container().exports.finish(export_id, error=f"{type(exc).__name__}: {exc!s:.500}")
            return
        raise self.retry(exc=exc) from exc
