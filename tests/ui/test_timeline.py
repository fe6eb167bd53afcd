"""The timeline builder and its SVG (pure: history events in, bars and SVG text out)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from celery_durable.engine import history as h
from celery_durable.engine.history import HistoryEvent
from celery_durable.ui.svg import format_duration, render_svg
from celery_durable.ui.timeline import Bar, build_timeline

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def _events(*specs: tuple[float, str, int | None, str | None, Any]) -> list[HistoryEvent]:
    return [HistoryEvent(seq, kind, T0 + timedelta(seconds=at), task_id, name, data)
            for seq, (at, kind, task_id, name, data) in enumerate(specs)]


def _kinds(timeline: Any) -> list[tuple[str, str, str]]:
    return [(b.kind, b.label, b.outcome) for b in timeline.bars]


def test_each_attempt_timer_and_child_is_a_bar_with_its_outcome() -> None:
    events = _events(
        (0, h.EXECUTION_STARTED, None, "order", {}),
        (0, h.TASK_SCHEDULED, 0, "charge", {"input": 1, "attempt": 1}),
        (1, h.TASK_FAILED, 0, None, {"message": "boom"}),
        (1, h.TIMER_CREATED, 1, "retry", {"fire_at": "x"}),
        (3, h.TIMER_FIRED, 1, None, {}),
        (3, h.TASK_SCHEDULED, 2, "charge", {"input": 1, "attempt": 2}),
        (4, h.TASK_COMPLETED, 2, None, 5),
        (4, h.SUB_ORCHESTRATION_CREATED, 3, "ship", {"instance_id": "o:3"}),
        (6, h.SUB_ORCHESTRATION_FAILED, 3, None, {"message": "lost"}),
        (6, h.EXECUTION_COMPLETED, None, None, {"status": "FAILED"}),
    )
    timeline = build_timeline("o", "abcdef0123", events, T0 + timedelta(hours=1))
    assert _kinds(timeline) == [
        ("orchestration", "order", "failed"), ("activity", "charge", "failed"),
        ("retry-timer", "retry wait", "completed"),
        ("activity", "charge (attempt 2)", "completed"),
        ("sub-orchestration", "ship", "failed")]
    charge2 = timeline.bars[3]
    assert charge2.celery_task_id == "o:abcdef01:2:2"
    assert (charge2.start, charge2.end) == (T0 + timedelta(seconds=3), T0 + timedelta(seconds=4))
    assert timeline.bars[4].child_instance_id == "o:3"
    assert timeline.end == T0 + timedelta(seconds=6)


def test_open_work_runs_to_now_or_is_abandoned_when_the_instance_ended() -> None:
    events = _events((0, h.EXECUTION_STARTED, None, "o", {}),
                     (0, h.TIMER_CREATED, 0, None, {"fire_at": "later"}))
    now = T0 + timedelta(seconds=30)
    running = build_timeline("o", "e" * 32, events, now)
    assert [(b.end, b.outcome) for b in running.bars] == [(None, "running")] * 2
    assert running.end == now
    ended = build_timeline("o", "e" * 32, events, now, T0 + timedelta(seconds=9), "TERMINATED")
    assert [(b.end, b.outcome) for b in ended.bars] == [
        (T0 + timedelta(seconds=9), "terminated"), (T0 + timedelta(seconds=9), "abandoned")]


def test_events_are_points_unless_the_waits_are_known() -> None:
    events = _events((0, h.EXECUTION_STARTED, None, "o", {}),
                     (5, h.EVENT_RAISED, None, "approval", True))
    points = build_timeline("o", "e" * 32, events, T0 + timedelta(seconds=6))
    assert _kinds(points)[1] == ("event", "event 'approval' received", "completed")
    wait = Bar("event-wait", "wait for 'approval'", T0, T0 + timedelta(seconds=5), "completed")
    known = build_timeline("o", "e" * 32, events, T0 + timedelta(seconds=6), waits=[wait])
    assert [b.kind for b in known.bars] == ["orchestration", "event-wait"]


def test_svg_has_one_escaped_rect_per_bar() -> None:
    events = _events((0, h.EXECUTION_STARTED, None, "<o>", {}),
                     (0, h.TASK_SCHEDULED, 0, 'x"<script>', {"attempt": 1}),
                     (2, h.TASK_COMPLETED, 0, None, 1))
    svg = render_svg(build_timeline("o", "e" * 32, events, T0 + timedelta(seconds=2)))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    rects = re.findall(r'<rect class="bar ([\w-]+) ([\w-]+)" data-kind="\1"', svg)
    assert rects == [("orchestration", "running"), ("activity", "completed")]
    widths = [float(w) for w in re.findall(r'<rect[^>]* width="([\d.]+)"', svg)]
    assert widths[1] > 0 and abs(widths[0] - widths[1]) < 1  # both span the whole 2 s


def test_durations_read_naturally() -> None:
    assert [format_duration(s) for s in (0.042, 12.34, 245, 3 * 3600 + 120, 50 * 3600)] == [
        "0.04 s", "12.3 s", "4 min 05 s", "3 h 02 min", "2 d 2 h"]


def test_a_called_celery_task_is_a_bar_like_an_activity() -> None:
    data = {"celery_task": True, "args": [1], "kwargs": {}, "options": {}, "attempt": 1}
    events = _events(
        (0, h.EXECUTION_STARTED, None, "order", {}),
        (0, h.TASK_SCHEDULED, 0, "billing.charge", data),
        (2, h.TASK_COMPLETED, 0, None, {"charged": 1}),
        (2, h.EXECUTION_COMPLETED, None, None, {"status": "COMPLETED"}),
    )
    timeline = build_timeline("o", "abcdef0123", events, T0 + timedelta(hours=1))
    assert _kinds(timeline) == [("orchestration", "order", "completed"),
                                ("activity", "billing.charge", "completed")]
    assert timeline.bars[1].celery_task_id == "o:abcdef01:0:1"  # the id the message was sent with
