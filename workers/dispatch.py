"""Task: fan a group of accepted jobs out to their first stage (``engram.dispatch``).

The API sends one message per group of jobs it accepted together (``engram.ingest.admit``); this
sends each job's ``engram.extract``. A redelivered message re-sends only the jobs still waiting to
start, and a duplicate extract is dropped by the stage anyway.
"""

from __future__ import annotations

from workers import runtime
from workers.celery_app import app

DISPATCH_TASK = "engram.dispatch"


@app.task(name=DISPATCH_TASK)
def dispatch(job_ids: list[str]) -> int:
    """Send ``engram.extract`` for each job still PENDING; returns how many were sent."""
    waiting = runtime.container().jobs.still_waiting(job_ids)
    with app.producer_or_acquire() as producer:  # one connection for the whole group
        for job_id in waiting:
            app.send_task("engram.extract", args=[job_id], producer=producer)
    return len(waiting)
