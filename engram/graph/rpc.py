"""Request/reply to graph workers over Redis, without a Celery result backend (DESIGN.md #1).

The caller sends a task carrying a fresh reply key and a deadline, then BLPOPs that key. The
graph worker RPUSHes its answer there (with a TTL, so an answer nobody waits for any more
expires). A message that reaches the worker after the deadline is skipped: its caller gave up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery

from engram.graph.routing import TASK_PREFIX

READ_TASK = TASK_PREFIX + "read"
REPLY_TTL_SECONDS = 60
# Redis priority lists: 0 is served first. Reads jump ahead of queued graph writes of the shard.
READ_PRIORITY = 0
WRITE_PRIORITY = 6
# BLPOP in slices shorter than the client's socket timeout (5 s in the container).
BLPOP_SLICE_SECONDS = 1.0


def reply(client: redis.Redis, key: str, payload: dict[str, Any]) -> None:
    pipe = client.pipeline()
    pipe.rpush(key, json.dumps(payload, default=str))
    pipe.expire(key, REPLY_TTL_SECONDS)
    pipe.execute()


def ask_shards(
    *,
    sender: Celery,
    client: redis.Redis,
    key_prefix: str,
    shards: Sequence[int],
    op: str,
    params: dict[str, Any],
    timeout_seconds: float,
) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """Send ``op`` to each shard's worker and wait for their answers; return (answers, shards that did not answer).

    Raises the broker's errors when the tasks cannot be sent at all.
    """
    key = f"{key_prefix}graph:reply:{uuid.uuid4().hex}"
    deadline = time.time() + timeout_seconds
    for shard in shards:
        sender.send_task(
            READ_TASK,
            kwargs={"shard": shard, "op": op, "params": params, "reply_to": key, "deadline": deadline},
            expires=timeout_seconds,
            priority=READ_PRIORITY,
        )
    answers: dict[int, dict[str, Any]] = {}
    while len(answers) < len(shards):
        remaining = deadline - time.time()
        if remaining <= 0:
            break
        item = client.blpop([key], timeout=min(remaining, BLPOP_SLICE_SECONDS))
        if item is not None:
            answer = json.loads(item[1])
            answers[int(answer["shard"])] = answer
    return answers, [s for s in shards if s not in answers]
