"""The stable JSON forms of history events and actions."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from replay_driver import (
    T0,
    Driver,
    done,
    failed,
    fired,
    json_round_trip,
    raised,
    resume,
    started,
    sub_done,
    sub_failed,
    summary,
    suspend,
    terminate,
)

from celery_durable.engine import (
    CreateTimer,
    HistoryEvent,
    OrchestrationContext,
    ScheduleActivity,
    ScheduleSubOrchestration,
    TerminateOrchestration,
    action_from_json,
    action_to_json,
    execute,
)
from celery_durable.engine import history as h
from celery_durable.errors import TaskFailedError


def _everything(ctx: OrchestrationContext, n: int) -> Any:
    with contextlib.suppress(TaskFailedError):  # it fails in these histories
        yield ctx.call_activity("a", input={"n": n})
    yield ctx.call_activity("b")
    yield ctx.create_timer(timedelta(minutes=5))
    with contextlib.suppress(TaskFailedError):
        yield ctx.call_sub_orchestrator("child", input=[1, 2])
    yield ctx.call_sub_orchestrator("child")
    yield ctx.wait_for_external_event("go")
    if n == 0:
        ctx.continue_as_new(1)
    ctx.send_event("other", "hello", data=n)
    yield ctx.wait_for_external_event("never")


def _all_kinds_histories() -> list[list[HistoryEvent]]:
    def run(n: int, *extra: HistoryEvent) -> list[HistoryEvent]:
        d = Driver(_everything)
        d.run(started(n, version="1"))
        d.run(failed(0, "a broke"))
        d.run(done(1, {"b": True}))
        d.run(fired(2, T0 + timedelta(minutes=5)))
        d.run(sub_failed(3))
        d.run(sub_done(4, "child result"))
        d.run(suspend("pause"), raised("Go", {"data": [1]}), resume("unpause"))
        for event in extra:
            d.run(event)
        return d.history

    ended = run(1, terminate({"bye": 1}))
    # a rewound history: what came before the first failure, then the rewind's record
    cut = next(i for i, e in enumerate(ended) if e.kind == h.TASK_FAILED)
    rewound = [*ended[:cut], h.execution_rewound(T0, "why", "e1", [], 3).with_seq(cut)]
    return [run(0), ended, rewound]


def test_histories_cover_every_kind_and_round_trip_through_json_text() -> None:
    histories = _all_kinds_histories()
    events = [e for history in histories for e in history]
    # the entity kinds have histories of their own: tests/engine/test_entity_calls.py
    assert {e.kind for e in events} == \
        h.ALL_KINDS - h.ENTITY_SCHEDULING_KINDS - h.ENTITY_COMPLETION_KINDS
    for event in events:
        text = json.dumps(event.to_json())
        back = HistoryEvent.from_json(json.loads(text))
        assert back == event
        assert back.timestamp.tzinfo is not None


def test_replaying_a_json_round_tripped_history_gives_the_same_result() -> None:
    for history in _all_kinds_histories():
        for cut in range(len(history) + 1):
            original = execute(_everything, "inst", history[:cut], [raised("never", 1)], T0)
            again = execute(_everything, "inst", json_round_trip(history[:cut]),
                            [raised("never", 1)], T0)
            assert summary(again) == summary(original)


def test_event_json_form_is_stable() -> None:
    event = HistoryEvent(3, h.TASK_SCHEDULED, T0, 1, "charge", {"input": {"x": 1}, "attempt": 2})
    assert event.to_json() == {
        "seq": 3, "kind": "TaskScheduled", "timestamp": "2024-01-01T12:00:00+00:00",
        "task_id": 1, "name": "charge", "data": {"input": {"x": 1}, "attempt": 2}}


def test_event_from_json_defaults_and_errors() -> None:
    naive = HistoryEvent.from_json({"kind": "EventRaised", "timestamp": "2024-01-01T12:00:00"})
    assert naive == HistoryEvent(-1, h.EVENT_RAISED, T0, None, None, None)
    shifted = HistoryEvent.from_json({"seq": 0, "kind": "EventRaised",
                                      "timestamp": "2024-01-01T14:00:00+02:00"})
    assert shifted.timestamp == T0 and shifted.timestamp.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="unknown history event kind 'TaskExploded'"):
        HistoryEvent.from_json({"kind": "TaskExploded", "timestamp": T0.isoformat()})


ACTIONS = [
    ScheduleActivity(0, "charge", {"total": 3, "items": ["a"]}, 2),
    ScheduleActivity(5, "noop", None),
    CreateTimer(1, datetime(2024, 6, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)),
    ScheduleSubOrchestration(2, "child", "parent:2", [1, None], "3"),
    ScheduleSubOrchestration(3, "child", "explicit", None),
    TerminateOrchestration("parent:2", {"why": "stop"}, True),
    TerminateOrchestration("x", None, False),
]


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: type(a).__name__)
def test_every_action_round_trips_through_json_text(action: Any) -> None:
    text = json.dumps(action_to_json(action))
    assert action_from_json(json.loads(text)) == action


def test_action_json_forms_are_stable() -> None:
    assert action_to_json(ACTIONS[0]) == {"type": "ScheduleActivity", "task_id": 0,
                                          "name": "charge", "attempt": 2,
                                          "input": {"total": 3, "items": ["a"]}}
    assert action_to_json(ACTIONS[2]) == {"type": "CreateTimer", "task_id": 1,
                                          "fire_at": "2024-06-01T12:30:15.123456+00:00"}
    assert action_to_json(ACTIONS[3]) == {"type": "ScheduleSubOrchestration", "task_id": 2,
                                          "name": "child", "instance_id": "parent:2",
                                          "input": [1, None], "version": "3"}
    assert action_to_json(ACTIONS[5]) == {"type": "TerminateOrchestration",
                                          "instance_id": "parent:2", "output": {"why": "stop"},
                                          "recursive": True}


def test_unknown_action_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown action type 'LaunchRocket'"):
        action_from_json({"type": "LaunchRocket"})
    with pytest.raises(ValueError, match="unknown action type None"):
        action_from_json({"task_id": 1})


def test_actions_emitted_by_an_episode_round_trip() -> None:
    d = Driver(_everything)
    emitted = []
    for events in ([started(0)], [failed(0)], [done(1)], [fired(2)], [sub_failed(3)]):
        emitted += d.run(*events).actions
    assert {type(a) for a in emitted} == {ScheduleActivity, CreateTimer, ScheduleSubOrchestration}
    for action in emitted:
        assert action_from_json(json.loads(json.dumps(action_to_json(action)))) == action
