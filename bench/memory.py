"""Peak resident memory of process trees, sampled with psutil while a benchmark runs."""

from __future__ import annotations

import threading
from typing import Any

import psutil

SAMPLE_SECONDS = 0.2
MB = 1024 * 1024


def tree_rss(pid: int) -> tuple[int, int]:
    """(sum of RSS over the process and all its descendants, RSS of the largest single process)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    sizes = []
    for proc in procs:
        try:
            sizes.append(proc.memory_info().rss)
        except psutil.Error:
            continue
    return sum(sizes), max(sizes, default=0)


class PeakRss:
    """Samples named process trees every 0.2 s in a thread; ``peaks()`` in MB."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._tree: dict[str, int] = dict.fromkeys(pids, 0)
        self._single: dict[str, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            tree, single = tree_rss(pid)
            self._tree[name] = max(self._tree[name], tree)
            self._single[name] = max(self._single[name], single)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def peaks(self) -> dict[str, Any]:
        return {
            name: {"tree_mb": round(self._tree[name] / MB, 1), "largest_process_mb": round(self._single[name] / MB, 1)}
            for name in self.pids
        }
