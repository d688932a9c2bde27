"""Task: the vector store's upkeep (``engram.vector_upkeep``), asked for by writers after their commits.

Writers ask at most once per ``vector_store.upkeep_interval_seconds`` across the deployment
(``Container._hand_off_upkeep``). One runs at a time: a second that arrives while the first still
compacts finds the lock held and is dropped; what fell due meanwhile is done by the next ask's task.
The queue is the default one, so an upkeep waits behind the embedding tasks queued before it.
"""

from __future__ import annotations

import logging

from workers import runtime
from workers.celery_app import app

log = logging.getLogger(__name__)
UPKEEP_TASK = "engram.vector_upkeep"
# Longer than any compaction takes (a tier of 8 fragments of 32k rows: seconds); a killed worker's lock expires.
RUNNING_LOCK_SECONDS = 600


def send_upkeep() -> None:
    app.send_task(UPKEEP_TASK)


@app.task(name=UPKEEP_TASK)
def vector_upkeep() -> None:
    c = runtime.container()
    upkeep = getattr(c.vector_store, "upkeep", None)
    if upkeep is None:  # a store that keeps itself (Weaviate)
        return
    lock = c.redis.lock(c.settings.redis.key_prefix + "vector-upkeep:running", timeout=RUNNING_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        log.debug("vector upkeep already running elsewhere")
        return
    try:
        upkeep()
    finally:
        lock.release()
