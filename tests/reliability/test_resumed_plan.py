"""A reconcile that died after saving its plan and before committing it, while another job of the same scope
ran in between (the dead attempt's scope lock expired first; its message came back later). Re-applying the
old plan as it was would add a memory a second time, or undo the other job's update. The stage functions
are driven directly, with the crash placed exactly; the same windows are hit at random in test_worker_kill.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from config.container import Container
from engram.sql.jobs import Job
from schemas.jobs import Stage
from workers import reconcile
from workers.embed import embed_work
from workers.extract import extract_work

PROJECT = "p-resume"


class Crash(Exception):
    pass


def embedded(c: Container, text: str, user: str = "u") -> Job:
    """A job whose extract and embed stages are done."""
    job_id = str(uuid.uuid4())
    c.jobs.create(job_id, PROJECT, {"messages": [{"role": "user", "content": text}], "user_id": user},
                  {"user_id": user})
    for stage, work in ((Stage.EXTRACTED, extract_work), (Stage.EMBEDDED, embed_work)):
        job = c.jobs.get(job_id)
        assert job is not None
        assert c.jobs.complete_stage(job_id, stage, **work(c, job))
    job = c.jobs.get(job_id)
    assert job is not None
    return job


def crashed_reconcile(c: Container, job: Job, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Run reconcile until the crash point: after the plan was saved ("before-apply") or after the vector
    store was written but before the SQL commit ("before-commit")."""
    def boom(*_: Any, **__: Any) -> Any:
        raise Crash(where)

    with monkeypatch.context() as patch:
        if where == "before-apply":
            patch.setattr(reconcile, "apply_plan", boom)
        else:
            patch.setattr(c.jobs, "record_events", boom)  # inside the commit that follows the vector writes
        with pytest.raises(Crash):
            reconcile.reconcile_work(c, job)


def finish(c: Container, job: Job) -> list[tuple[str, str]]:
    fresh = c.jobs.get(job.id)
    assert fresh is not None
    reconcile.reconcile_work(c, fresh)
    return [(e.event, e.memory) for e in c.jobs.events(job.id)]


def stored(c: Container, user: str = "u") -> list[str]:
    from engram.filters import eq

    return sorted(m.memory for m in c.vector_store.list(project_id=PROJECT, where=eq("user_id", user), limit=100))


def history_of(c: Container, text: str) -> list[tuple[str, str | None]]:
    from engram.filters import eq

    [memory] = [m for m in c.vector_store.list(project_id=PROJECT, where=eq("user_id", "u"), limit=100)
                if m.memory == text]
    return [(h.event, h.new_memory) for h in c.history.for_memory(PROJECT, memory.id)]


Scenario = Callable[[Container, pytest.MonkeyPatch], None]


def test_a_fact_added_meanwhile_is_not_added_again(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = embedded(container, "I like tea."), embedded(container, "I like tea.")
    crashed_reconcile(container, a, monkeypatch, "before-apply")
    assert finish(container, b) == [("ADD", "Likes tea")]  # b ran while a's lock expired
    assert finish(container, a) == []  # a's old ADD is obsolete: the scope holds the fact now
    assert stored(container) == ["Likes tea"]
    assert history_of(container, "Likes tea") == [("ADD", "Likes tea")]


def test_an_update_made_meanwhile_is_not_undone(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    a = embedded(container, "I live in Lima.")
    crashed_reconcile(container, a, monkeypatch, "before-commit")  # "Lives in Lima" written, not recorded
    b = embedded(container, "I live in Oslo.")
    assert [e for e, _ in finish(container, b)] == ["UPDATE"]  # b saw a's memory and moved it on
    finish(container, a)
    assert stored(container) == ["Lives in Oslo"]  # not back to Lima
    history = history_of(container, "Lives in Oslo")
    assert history[-1] == ("UPDATE", "Lives in Oslo")


def test_a_plan_that_nothing_overtook_is_applied_whole(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    first = embedded(container, "I play chess.")
    assert finish(container, first) == [("ADD", "Plays chess")]
    for where, text in (("before-apply", "I speak Finnish."), ("before-commit", "I collect stamps.")):
        job = embedded(container, f"{text} I play chess.")
        crashed_reconcile(container, job, monkeypatch, where)
        events = finish(container, job)
        assert [e for e, _ in events] == ["ADD"], where
        assert finish(container, job) == events  # once more (a duplicate delivery): nothing changes
    assert stored(container) == ["Collects stamps", "Plays chess", "Speaks Finnish"]
    assert history_of(container, "Collects stamps") == [("ADD", "Collects stamps")]


def test_a_committed_plan_is_not_applied_again(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    # b's reconcile committed (store and events) and its worker died before marking the stage done; c then
    # moved the memory back to the text b had updated from. b's redelivery must not move it again.
    assert [e for e, _ in finish(container, embedded(container, "I live in Lima."))] == ["ADD"]
    b = embedded(container, "I live in Oslo.")
    assert finish(container, b) == [("UPDATE", "Lives in Oslo")]
    assert finish(container, embedded(container, "I live in Lima.")) == [("UPDATE", "Lives in Lima")]
    assert finish(container, b) == [("UPDATE", "Lives in Oslo")]  # the redelivery: its events as recorded
    assert stored(container) == ["Lives in Lima"]
    assert history_of(container, "Lives in Lima")[-1] == ("UPDATE", "Lives in Lima")


def test_a_committed_plan_still_sends_its_webhooks(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker died after the commit that wrote the outbox rows and before it sent them: the redelivery,
    # which writes nothing, still sends the deliveries waiting for their first attempt.
    from workers import webhooks

    container.webhooks.create(PROJECT, "h", "https://example.com/hook", ["memory_add"])
    sent: list[str] = []
    monkeypatch.setattr(webhooks, "enqueue", lambda queued: sent.extend(d for d, _ in queued))
    job = embedded(container, "I keep bees.")
    with monkeypatch.context() as died:
        died.setattr(webhooks, "enqueue", lambda queued: None)  # committed, never sent
        assert finish(container, job) == [("ADD", "Keeps bees")]
    assert sent == []
    assert finish(container, job) == [("ADD", "Keeps bees")]
    assert len(sent) == 1  # the one memory_add delivery
    assert stored(container) == ["Keeps bees"]
