"""What API processes ask of the graph. They never open a shard file (DESIGN.md #4): every call
goes to the owning shard's ``graph.<n>`` queue.

Search degrades instead of failing: when a graph worker is down or slow, the caller gets the
relations that did arrive (often none) and a reason starting with ``"unavailable: "``, and answers
with its vector results anyway.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

import kombu.exceptions
import redis.exceptions
from celery import Celery

from config.container import Container
from engram.errors import PermanentError, TransientError
from engram.graph import rpc
from engram.graph.port import ScopeIds
from engram.graph.routing import TASK_PREFIX, shards_for_read

log = logging.getLogger(__name__)

CLEAR_TASK = TASK_PREFIX + "clear"
SCOPE_KEYS = ("user_id", "agent_id", "run_id")
# Failures that mean "the graph cannot answer now", as opposed to bugs.
UNAVAILABLE = (
    TransientError,
    PermanentError,
    OSError,
    kombu.exceptions.OperationalError,
    redis.exceptions.RedisError,
)


# The LLM call of a search runs here so the caller's deadline holds even when the LLM is slow (a late
# answer is dropped). A few threads: the API's own threadpool bounds how many searches run at once.
_LLM_CALLS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="graph-query")


class GraphUnavailable(RuntimeError):
    """A graph listing could not be answered in time (the API answers 503)."""


def graph_ids(ids: Any) -> dict[str, str]:
    """The user/agent/run ids a caller gave (a ``ScopeFields``-like object or a mapping); blanks left out."""
    get = ids.get if isinstance(ids, Mapping) else lambda key: getattr(ids, key, None)
    return {key: value for key in SCOPE_KEYS if (value := get(key))}


def _subject(ids: ScopeIds) -> str:
    return ids.get("user_id") or ids.get("agent_id") or ids.get("run_id") or ""


def relations_for_search(
    c: Container,
    sender: Celery,
    project_id: str,
    ids: Any,
    query: str,
    *,
    timeout_seconds: float | None = None,
) -> tuple[list[dict[str, str]], str | None]:
    """Relations ``[{source, relationship, destination}]`` about the query's entities, and None; or
    whatever arrived plus ``"unavailable: <why>"`` when the graph could not answer in time.

    Blocks for up to ``timeout_seconds`` (default ``graph_store.query_timeout_seconds``), which covers
    the query-entities call of the LLM too: with a remote LLM, give it room for one call.
    """
    settings = c.settings.graph_store
    if not settings.enabled:
        return [], "unavailable: graph memory is not enabled (ENGRAM_GRAPH_STORE__PROVIDER)"
    timeout = timeout_seconds if timeout_seconds is not None else settings.query_timeout_seconds
    started = time.monotonic()
    scope = graph_ids(ids)
    try:
        call = _LLM_CALLS.submit(c.llm.extract_query_entities, query, subject=_subject(scope))
        try:
            terms = call.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return [], f"unavailable: the query's entities took the LLM longer than {timeout:g}s"
        if not terms:
            return [], None
        vectors = c.embedder.embed(terms)
        shards = shards_for_read(project_id, scope.get("user_id"), settings.shards)
        answers, missing = rpc.ask_shards(
            sender=sender,
            client=c.redis,
            key_prefix=c.settings.redis.key_prefix,
            shards=shards,
            op="search",
            params={
                "project_id": project_id,
                "ids": scope,
                "terms": [[t, v] for t, v in zip(terms, vectors, strict=True)],
                "threshold": settings.search_threshold,
                "limit": settings.search_limit,
            },
            timeout_seconds=max(0.05, timeout - (time.monotonic() - started)),
        )
    except UNAVAILABLE as exc:
        log.warning("graph search unavailable: %s", exc)
        return [], f"unavailable: {type(exc).__name__}: {exc!s:.200}"
    found = [item for a in answers.values() if a.get("ok") for item in a.get("result", [])]
    found.sort(key=lambda item: item.get("score", 0.0), reverse=True)
    relations: dict[tuple[str, str, str], dict[str, str]] = {}
    for item in found:
        key = (item["source"], item["relationship"], item["destination"])
        relations.setdefault(key, {"source": key[0], "relationship": key[1], "destination": key[2]})
    return list(relations.values())[: settings.search_limit], _problem(answers, missing, timeout)


def _problem(answers: dict[int, dict[str, Any]], missing: list[int], timeout: float) -> str | None:
    failed = {shard: a.get("error", "error") for shard, a in answers.items() if not a.get("ok")}
    if missing:
        shards = ", ".join(f"graph.{s}" for s in missing)
        return f"unavailable: no answer from {shards} within {timeout:g}s"
    if failed:
        return "unavailable: " + "; ".join(f"graph.{s}: {e}" for s, e in sorted(failed.items()))
    return None


def list_graph(
    c: Container,
    sender: Celery,
    project_id: str,
    ids: Any,
    what: Literal["entities", "relations"],
    *,
    limit: int,
    timeout_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """A scope's entities or relations. Raises ``GraphUnavailable`` if a shard does not answer in time."""
    settings = c.settings.graph_store
    timeout = timeout_seconds if timeout_seconds is not None else settings.query_timeout_seconds
    scope = graph_ids(ids)
    try:
        answers, missing = rpc.ask_shards(
            sender=sender,
            client=c.redis,
            key_prefix=c.settings.redis.key_prefix,
            shards=shards_for_read(project_id, scope.get("user_id"), settings.shards),
            op=what,
            params={"project_id": project_id, "ids": scope, "limit": limit},
            timeout_seconds=timeout,
        )
    except UNAVAILABLE as exc:
        raise GraphUnavailable(f"graph unavailable: {exc!s:.200}") from exc
    problem = _problem(answers, missing, timeout)
    if problem:
        raise GraphUnavailable(problem)
    rows = [row for shard in sorted(answers) for row in answers[shard]["result"]]
    return rows[:limit]


def clear_scope(c: Container, sender: Celery, project_id: str, ids: Any) -> list[int]:
    """Ask the owning shard(s) to delete the scope's entities and relations (asynchronously).

    Returns the shards asked: none when graph memory is off or ``ids`` names no user, agent or run
    (the graph knows no other filter, and clearing a whole project is never implied). Queued behind
    the shard's pending graph writes, so a job already in its graph stage for this scope lands
    before the clear. Raises the broker's errors when the request cannot be queued.
    """
    settings = c.settings.graph_store
    scope = graph_ids(ids)
    if not settings.enabled or not scope:
        return []
    shards = shards_for_read(project_id, scope.get("user_id"), settings.shards)
    for shard in shards:
        sender.send_task(
            CLEAR_TASK,
            kwargs={"shard": shard, "project_id": project_id, "ids": scope},
            priority=rpc.WRITE_PRIORITY,
        )
    return shards
