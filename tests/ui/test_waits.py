"""Event waits found by replaying the orchestrator over its history (no worker needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from celery_durable import Durable
from celery_durable.engine import history as h
from celery_durable.engine.history import HistoryEvent
from celery_durable.ui.waits import event_waits

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
NAME = "ui_waits.approve"


@pytest.fixture
def durable(tmp_path: Path) -> Any:
    app = Celery("ui-waits", set_as_current=False)
    found = Durable(app, store_url=f"sqlite:///{tmp_path / 'w.sqlite3'}")

    @found.orchestrator(name=NAME)
    def approve(ctx: Any, _: Any) -> Any:
        yield ctx.create_timer(timedelta(seconds=1))
        return (yield ctx.wait_for_external_event("OK"))

    return found


def _history(*specs: tuple[float, str, int | None, str | None, Any]) -> list[HistoryEvent]:
    return [HistoryEvent(seq, kind, T0 + timedelta(seconds=at), task_id, name, data)
            for seq, (at, kind, task_id, name, data) in enumerate(specs)]


START = (0, h.EXECUTION_STARTED, None, NAME, {"input": None})
TIMER = (0, h.TIMER_CREATED, 0, None, {"fire_at": (T0 + timedelta(seconds=1)).isoformat()})
FIRED = (1, h.TIMER_FIRED, 0, None, {"fire_at": (T0 + timedelta(seconds=1)).isoformat()})


def test_a_wait_runs_from_the_event_that_started_it_to_the_one_that_ended_it(
        durable: Any) -> None:
    waiting = event_waits(durable, "i", NAME, _history(START, TIMER, FIRED))
    assert waiting is not None
    assert [(b.label, b.start, b.end, b.outcome) for b in waiting] == [
        ("wait for 'ok'", T0 + timedelta(seconds=1), None, "running")]
    done = event_waits(durable, "i", NAME, _history(
        START, TIMER, FIRED, (5, h.EVENT_RAISED, None, "ok", 1),
        (5, h.EXECUTION_COMPLETED, None, None, {"status": "COMPLETED"})))
    assert done is not None
    assert [(b.start, b.end, b.outcome) for b in done] == [
        (T0 + timedelta(seconds=1), T0 + timedelta(seconds=5), "completed")]


def test_unknown_code_or_code_that_does_not_replay_gives_no_waits(durable: Any) -> None:
    assert event_waits(durable, "i", "ui_waits.unknown", _history(START)) is None
    changed = _history(START, (0, h.TASK_SCHEDULED, 0, "charge", {"attempt": 1}))
    assert event_waits(durable, "i", NAME, changed) is None
