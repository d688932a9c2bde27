"""One thread per process runs a batch function; calls that arrive together share one run.

Why: some work costs about the same for a few items as for one. A forward pass of all-MiniLM-L6-v2
on this class of CPU costs about the same for one short text as for a few dozen (reading the weights
dominates, bench/), so the facts of several conversations embedded at once cost little more than one
conversation's; and torch's per-thread scratch buffers exist once, not once per thread of a 32-thread
worker. A LanceDB append costs a commit (a fragment file, a manifest, a transaction file) whatever
its row count, so the appends of a worker's threads that arrive together share one.

Each call waits for its own results. A batch that fails is run again call by call, so an error is
raised only in the calls whose own items meet it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Call(Generic[In, Out]):
    items: list[In]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Out] | None = None
    error: BaseException | None = None


class BatchingRunner(Generic[In, Out]):
    """Runs ``run_batch`` (items in, one result per item out) on one daemon thread, started on first use
    (so never before a fork)."""

    def __init__(
        self, run_batch: Callable[[list[In]], list[Out]], *, max_items: int = 256, name: str = "engram-batch"
    ) -> None:
        self._run_batch = run_batch
        self.max_items = max_items
        self.name = name
        self._calls: queue.SimpleQueue[_Call[In, Out]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()

    def run(self, items: Sequence[In]) -> list[Out]:
        if not items:
            return []
        call: _Call[In, Out] = _Call(list(items))
        self._ensure_thread()
        self._calls.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        assert call.results is not None
        return call.results

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid():  # a forked child has no thread of its own
                self._calls = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._pid = os.getpid()
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._calls.get()]
            count = len(batch[0].items)
            while count < self.max_items:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                batch.append(call)
                count += len(call.items)
            try:
                self._run(batch)
            finally:
                for call in batch:
                    call.done.set()

    def _run(self, batch: list[_Call[In, Out]]) -> None:
        try:
            results = self._run_batch([item for call in batch for item in call.items])
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc  # handed to the caller, which raises it
                return
            for call in batch:  # whose items failed it? Each call alone, so the others still succeed
                self._run([call])
            return
        start = 0
        for call in batch:
            call.results = results[start : start + len(call.items)]
            start += len(call.items)
