"""Which shard owns a scope's graph, which queue reaches it, and which worker may consume it.

Kuzu lets one process open a database file (DESIGN.md #4), so each shard file has exactly one
owner: the worker consuming ``graph.<n>`` with concurrency 1. The shard is a stable hash of the
project and user id, not of the full scope: a search usually names the user only, and must reach
every graph of that user (agent and run ids narrow the match inside the shard). A read that names
no user cannot know the shard and asks all of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from engram.scope import Scope

QUEUE_PREFIX = "graph."
QUEUE_NAME = re.compile(r"^graph\.(\d+)$")
TASK_PREFIX = "engram.graph."


class GraphNotOwned(RuntimeError):
    """This process may not open a graph shard (it is not that shard's graph worker)."""


class WrongShard(GraphNotOwned):
    """A message for one shard reached the worker of another: routing is broken; never touch the file."""


class GraphWorkerMisconfigured(RuntimeError):
    """A worker would consume graph queues it must not (another shard, several, or concurrency > 1)."""


def shard_for(scope: Scope, shards: int) -> int:
    """The shard of ``scope``'s graph: stable across processes, machines and restarts."""
    return shard_for_user(scope.project_id, scope.user_id, shards)


def shard_for_user(project_id: str, user_id: str, shards: int) -> int:
    if shards <= 1:
        return 0
    digest = hashlib.sha256(f"{project_id}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shards_for_read(project_id: str, user_id: str | None, shards: int) -> list[int]:
    """The shards a read must ask: the user's, or every shard when no user is named."""
    if user_id:
        return [shard_for_user(project_id, user_id, shards)]
    return list(range(shards))


def queue_for(shard: int) -> str:
    return f"{QUEUE_PREFIX}{shard}"


def shard_of_queue(queue: str) -> int | None:
    match = QUEUE_NAME.match(queue)
    return int(match.group(1)) if match else None


def route_graph_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> Any:
    """Celery router: every ``engram.graph.*`` task goes to the queue of the ``shard`` it names."""
    if name.startswith(TASK_PREFIX) and isinstance(kwargs, dict) and "shard" in kwargs:
        return {"queue": queue_for(int(kwargs["shard"]))}
    return None


def owned_shard(queues: Iterable[str], concurrency: int, configured: int | None, shards: int) -> int | None:
    """The shard a worker owns, from the queues it consumes; None for a worker that consumes no graph queue.

    Raises ``GraphWorkerMisconfigured`` when the worker would break single ownership.
    """
    queues = list(queues)
    graph_queues = sorted(q for q in queues if q.startswith(QUEUE_PREFIX))
    if not graph_queues:
        if configured is not None:
            raise GraphWorkerMisconfigured(
                f"ENGRAM_GRAPH_STORE__SHARD={configured} but the worker consumes no graph queue "
                f"(use -Q {queue_for(configured)})"
            )
        return None
    if len(graph_queues) > 1:
        raise GraphWorkerMisconfigured(f"a graph worker owns one shard; it was given {', '.join(graph_queues)}")
    shard = shard_of_queue(graph_queues[0])
    if shard is None or shard >= shards:
        raise GraphWorkerMisconfigured(f"{graph_queues[0]} is not a graph queue of {shards} shard(s)")
    if configured is not None and configured != shard:
        raise GraphWorkerMisconfigured(
            f"ENGRAM_GRAPH_STORE__SHARD={configured} but the worker consumes {graph_queues[0]}"
        )
    others = sorted(set(queues) - set(graph_queues))
    if others:
        # A long LLM task on the same single slot would hold up every graph read of the shard.
        raise GraphWorkerMisconfigured(f"a graph worker consumes only {graph_queues[0]}; drop {', '.join(others)}")
    if concurrency != 1:
        raise GraphWorkerMisconfigured(f"a graph worker runs with concurrency 1 (-c 1), not {concurrency}")
    return shard


def check_owner(store_shard: int, message_shard: int) -> None:
    """The guard every graph task passes before touching its store."""
    if store_shard != message_shard:
        raise WrongShard(f"a message for {queue_for(message_shard)} reached the worker of {queue_for(store_shard)}")
