"""The helpers the pipeline's hook points call (reconcile's outbox, job_succeeded/job_failed) and the sweep."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from config.container import Container
from schemas.jobs import JobStatus, MemoryEvent
from workers import webhooks


def test_job_events_and_memory_events_reach_the_outbox_once(container: Container) -> None:
    c = container
    c.jobs.create("job-h", "p1", {"messages": "x", "filters": {"user_id": "ana"}}, {"user_id": "ana"})
    hook = c.webhooks.create("p1", "h", "https://a.example/", ["memory_delete", "job_failed"])
    job = c.jobs.get("job-h")
    assert job is not None
    events = [MemoryEvent(id="m1", memory="Eats meat", event="DELETE"), MemoryEvent(id="m2", memory="x", event="ADD")]
    with c.engine.begin() as conn:
        queued = webhooks.memory_events_outbox(conn, job, events)
    assert len(queued) == 1  # the ADD is not subscribed
    first = webhooks.job_event_outbox(c, "job-h", JobStatus.FAILED, "extract: boom")
    assert webhooks.job_event_outbox(c, "job-h", JobStatus.FAILED, "extract: boom") == first  # a retried stage
    assert webhooks.job_event_outbox(c, "job-h", JobStatus.SUCCEEDED) == []  # not subscribed
    total, rows = c.webhooks.deliveries(hook.id)
    assert total == 2
    failed = next(json.loads(d.body) for d in rows if d.event_type == "job_failed")
    assert failed["event_details"]["data"]["error"] == "extract: boom"
    assert failed["event_details"]["event"] == "FAILED" and failed["scope"] == {"user_id": "ana"}
    assert webhooks.job_event_outbox(c, "no-such-job", JobStatus.FAILED) == []


def test_sweep_resends_only_overdue_deliveries(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    c = container
    c.webhooks.create("p1", "h", "https://a.example/", ["memory_add"])
    c.jobs.create("job-s", "p1", {"messages": "x", "user_id": "u"}, {"user_id": "u"})
    job = c.jobs.get("job-s")
    assert job is not None
    with c.engine.begin() as conn:
        [(delivery_id, _)] = webhooks.memory_events_outbox(conn, job, [MemoryEvent(id="m", memory="y", event="ADD")])
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(webhooks, "enqueue", lambda queued: sent.extend(queued))
    assert webhooks.sweep(c) == 0  # just written: its own message is on the way
    later = datetime.now(UTC) + timedelta(seconds=c.settings.webhooks.sweep_grace_seconds + 1)
    monkeypatch.setattr(webhooks, "datetime", type("Clock", (), {"now": staticmethod(lambda tz=None: later)}))
    assert webhooks.sweep(c) == 1 and sent == [(delivery_id, 0)]
