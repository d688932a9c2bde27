"""Peak resident memory of process trees, sampled with psutil while a benchmark runs.

RSS counts every page a process has mapped, the shared libraries' code included, which the other processes
running the same libraries map too (a worker's lance, lancedb, arrow and ONNX Runtime: ~350 MB of its RSS on
the 2026-12-06 VM). At the end, the largest process of each tree is also read for its private memory (what
would be freed if it exited) and its PSS (shared pages split among the processes mapping them).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import psutil

SAMPLE_SECONDS = 0.2
MB = 1024 * 1024


def tree_rss(pid: int) -> tuple[int, int, int]:
    """(sum of RSS over the process and all its descendants, RSS of the largest single process, its pid)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    sizes = []
    for proc in procs:
        try:
            sizes.append((proc.memory_info().rss, proc.pid))
        except psutil.Error:
            continue
    largest = max(sizes, default=(0, 0))
    return sum(rss for rss, _ in sizes), largest[0], largest[1]


def private_and_pss(pid: int) -> tuple[int, int] | None:
    """(private, PSS) bytes of one process from /proc/<pid>/smaps_rollup (Linux); None where unreadable."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {key: int(value) for key, value in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    return (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024, kb.get("Pss", 0) * 1024


class PeakRss:
    """Samples named process trees every 0.2 s in a thread; ``peaks()`` in MB."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._tree: dict[str, int] = dict.fromkeys(pids, 0)
        self._single: dict[str, int] = dict.fromkeys(pids, 0)
        self._at_end: dict[str, tuple[int, int] | None] = dict.fromkeys(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            tree, single, _ = tree_rss(pid)
            self._tree[name] = max(self._tree[name], tree)
            self._single[name] = max(self._single[name], single)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()
        for name, pid in self.pids.items():
            largest = tree_rss(pid)[2]
            self._at_end[name] = private_and_pss(largest) if largest else None

    def peaks(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.pids:
            out[name] = {
                "tree_mb": round(self._tree[name] / MB, 1),
                "largest_process_mb": round(self._single[name] / MB, 1),
            }
            at_end = self._at_end[name]
            if at_end is not None:
                out[name]["largest_private_mb_at_end"] = round(at_end[0] / MB, 1)
                out[name]["largest_pss_mb_at_end"] = round(at_end[1] / MB, 1)
        return out
