"""Group commit (engram/admission.py): requests that arrive together share one flush, each gets its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from engram.admission import GroupCommitter


class Recorder:
    """A flush that answers ``item * 10``, refuses negative items, and can be held to let a queue build up."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.release.wait(10)
        self.groups.append(list(items))
        return [ValueError(f"refused {i}") if i < 0 else i * 10 for i in items]


async def _submit_while_held(flush: Recorder, committer: GroupCommitter[int, int], items: list[int]) -> list[object]:
    flush.release.clear()
    first = asyncio.create_task(committer.submit(items[0]))  # goes alone: nothing was in flight
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(committer.submit(i)) for i in items[1:]]  # wait behind the held flush
    await asyncio.sleep(0.05)
    flush.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_requests_that_arrive_together_share_a_flush() -> None:
    flush = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(flush, max_group=100)
    answers = asyncio.run(_submit_while_held(flush, committer, list(range(1, 21))))
    assert answers == [i * 10 for i in range(1, 21)]
    assert flush.groups == [[1], list(range(2, 21))]


def test_each_request_gets_its_own_refusal() -> None:
    flush = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(flush)
    answers = asyncio.run(_submit_while_held(flush, committer, [1, 2, -3, 4]))
    assert answers[:2] == [10, 20] and answers[3] == 40
    assert isinstance(answers[2], ValueError) and str(answers[2]) == "refused -3"


def test_groups_are_capped() -> None:
    flush = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(flush, max_group=4)
    asyncio.run(_submit_while_held(flush, committer, list(range(11))))
    assert [len(g) for g in flush.groups] == [1, 4, 4, 2]
    assert sorted(i for g in flush.groups for i in g) == list(range(11))


def test_a_failing_flush_fails_its_whole_group_and_the_next_group_still_runs() -> None:
    calls: list[list[int]] = []

    def flush(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("database is gone")
        return list(items)

    async def scenario() -> tuple[object, object]:
        committer: GroupCommitter[int, int] = GroupCommitter(flush)
        with pytest.raises(OSError, match="database is gone"):
            await committer.submit(1)
        return await committer.submit(2), len(calls)

    assert asyncio.run(scenario()) == (2, 2)
