"""One thread per process runs the embedding model; calls that arrive together share a forward pass.

Why: a forward pass of all-MiniLM-L6-v2 on this class of CPU costs about the same for one short text
as for a few dozen (reading the weights dominates, bench/), so the facts of several conversations
embedded at once cost little more than one conversation's. And torch's per-thread scratch buffers
exist once, not once per thread of a 32-thread worker. Calls wait for their own result; an error of
the model is raised in every call of the batch that met it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Vectors = list[list[float]]


@dataclass
class _Call:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: Vectors | None = None
    error: BaseException | None = None


class BatchingRunner:
    """Runs ``encode`` on one daemon thread, started on first use (so never before a fork)."""

    def __init__(self, encode: Callable[[list[str]], Vectors], *, max_texts: int = 256) -> None:
        self._encode = encode
        self.max_texts = max_texts
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return []
        call = _Call(list(texts))
        self._ensure_thread()
        self._calls.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        assert call.vectors is not None
        return call.vectors

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid():  # a forked child has no thread of its own
                self._calls = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, name="engram-embedder", daemon=True)
                self._pid = os.getpid()
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._calls.get()]
            count = len(batch[0].texts)
            while count < self.max_texts:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                batch.append(call)
                count += len(call.texts)
            try:
                vectors = self._encode([text for call in batch for text in call.texts])
            except BaseException as exc:  # handed to every waiting caller, which raises it
                for call in batch:
                    call.error = exc
            else:
                start = 0
                for call in batch:
                    call.vectors = vectors[start : start + len(call.texts)]
                    start += len(call.texts)
            for call in batch:
                call.done.set()
