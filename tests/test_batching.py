"""``BatchingRunner``: calls that arrive together share one run; each gets its own results or its own error."""

from __future__ import annotations

import threading
import time

import pytest

from engram.batching import BatchingRunner


def _wait_for(condition: object, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_calls_that_arrive_during_a_run_share_the_next_one() -> None:
    batches: list[list[int]] = []
    first_running, release = threading.Event(), threading.Event()

    def double(items: list[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            first_running.set()
            release.wait(10)  # the runner is busy while the others queue up
        return [2 * i for i in items]

    runner: BatchingRunner[int, int] = BatchingRunner(double)
    results: dict[int, list[int]] = {}

    def call(n: int) -> None:
        results[n] = runner.run([n, n + 100])

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert first_running.wait(10)
    threads += [threading.Thread(target=call, args=(n,)) for n in range(1, 6)]
    for t in threads[1:]:
        t.start()
    _wait_for(lambda: runner._calls.qsize() == 5, "the five later calls queued")
    release.set()
    for t in threads:
        t.join(10)
    assert len(batches) == 2 and batches[0] == [0, 100] and len(batches[1]) == 10  # one run for the five
    assert results == {n: [2 * n, 2 * (n + 100)] for n in range(6)}  # each call its own results, in order


def test_a_failing_batch_fails_only_the_calls_whose_items_fail() -> None:
    runs: list[list[int]] = []
    first_running, release = threading.Event(), threading.Event()

    def no_negatives(items: list[int]) -> list[int]:
        runs.append(list(items))
        if len(runs) == 1:
            first_running.set()
            release.wait(10)
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return items

    runner: BatchingRunner[int, int] = BatchingRunner(no_negatives)
    outcome: dict[int, object] = {}

    def call(n: int) -> None:
        try:
            outcome[n] = runner.run([n])
        except ValueError as exc:
            outcome[n] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert first_running.wait(10)
    later = [threading.Thread(target=call, args=(n,)) for n in (1, -2, 3)]
    for t in later:
        t.start()
    _wait_for(lambda: runner._calls.qsize() == 3, "the three later calls queued")
    release.set()
    for t in [first, *later]:
        t.join(10)
    assert outcome[0] == [0] and outcome[1] == [1] and outcome[3] == [3]
    assert isinstance(outcome[-2], ValueError)
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
