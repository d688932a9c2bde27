"""Group commit: requests that arrive together share one flush (one SQL transaction, one broker message).

Each request puts its item in the waiting list and awaits its own answer. One drain task per process
takes everything waiting (at most ``max_group``), runs ``flush`` on a thread, and answers each request
with its own result or exception. There is no timer: a request that finds nothing in flight goes at
once, and under load the groups grow by themselves while the previous flush runs. An answer still
means the flush finished (for ingest: the job's row committed and its message was sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitter(Generic[T, R]):
    """``flush(items)`` returns one result per item: a value, or the exception that item's request raises."""

    def __init__(self, flush: Callable[[Sequence[T]], Sequence[R | Exception]], *, max_group: int = 256) -> None:
        self._flush = flush
        self.max_group = max_group
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
            try:
                results = await asyncio.to_thread(self._flush, [item for item, _ in group])
            except Exception as exc:  # the flush itself failed: every request of the group answers with it
                results = [exc] * len(group)
            for (_, future), result in zip(group, results, strict=True):
                if future.done():  # the client went away; what the flush did stands
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
