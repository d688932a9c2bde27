"""``BatchingRunner``: calls that arrive together share one run; each gets its own results or its own error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from engram.batching import BatchingRunner


def _first_alone_then_together(
    run_batch: Callable[[list[int]], list[int]], first: list[int], later: list[list[int]]
) -> tuple[list[list[int]], list[object]]:
    """Run ``first`` while the runner is held busy, queue each of ``later`` behind it, then let go.

    Returns the batches ``run_batch`` saw and each call's outcome (its results, or the error it raised)."""
    runs: list[list[int]] = []
    first_running, release = threading.Event(), threading.Event()

    def held(items: list[int]) -> list[int]:
        runs.append(list(items))
        if len(runs) == 1:
            first_running.set()
            release.wait(10)  # the runner is busy while the others queue up
        return run_batch(items)

    runner: BatchingRunner[int, int] = BatchingRunner(held)
    calls = [first, *later]
    outcome: list[object] = [None] * len(calls)

    def call(index: int) -> None:
        try:
            outcome[index] = runner.run(calls[index])
        except Exception as exc:
            outcome[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    threads[0].start()
    assert first_running.wait(10)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 10
    while runner._calls.qsize() < len(later):
        assert time.monotonic() < deadline, "the later calls never queued"
        time.sleep(0.001)
    release.set()
    for t in threads:
        t.join(10)
    return runs, outcome


def test_calls_that_arrive_during_a_run_share_the_next_one() -> None:
    runs, outcome = _first_alone_then_together(
        lambda items: [2 * i for i in items], [0, 100], [[n, n + 100] for n in range(1, 6)]
    )
    assert len(runs) == 2 and runs[0] == [0, 100] and len(runs[1]) == 10  # one run for the five
    assert outcome == [[2 * n, 2 * (n + 100)] for n in range(6)]  # each call its own results, in order


def test_a_failing_batch_fails_only_the_calls_whose_items_fail() -> None:
    def no_negatives(items: list[int]) -> list[int]:
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return items

    runs, outcome = _first_alone_then_together(no_negatives, [0], [[1], [-2], [3]])
    assert outcome[0] == [0] and outcome[1] == [1] and outcome[3] == [3]
    assert isinstance(outcome[2], ValueError)
    assert sorted(runs[1]) == [-2, 1, 3] and sorted(map(tuple, runs[2:])) == [(-2,), (1,), (3,)]


def test_an_empty_call_runs_nothing() -> None:
    def never(items: list[int]) -> list[int]:
        raise AssertionError("ran")

    assert BatchingRunner(never).run([]) == []


def test_a_lone_failing_call_raises_its_error() -> None:
    def broken(items: list[int]) -> list[int]:
        raise RuntimeError("model gone")

    with pytest.raises(RuntimeError, match="model gone"):
        BatchingRunner(broken).run([1])
