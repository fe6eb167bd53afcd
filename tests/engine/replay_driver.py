"""Helpers for the engine tests: event shorthands, an episode driver and replay checks.

``Driver`` runs an orchestrator episode by episode the way the runtime does: new events go to a
warm ``Orchestration`` (kept between episodes) and, independently, to a cold ``execute`` over the
accumulated history; both must produce exactly the same episode. After every episode a *fresh*
replay of the whole history must reach the same state without producing anything new.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from celery_durable.engine import (
    Action,
    EpisodeResult,
    FailureDetails,
    HistoryEvent,
    Orchestration,
    OrchestrationStatus,
    TerminateOrchestration,
    action_to_json,
    execute,
)
from celery_durable.engine import history as h

#: the engine tests' short name for OrchestrationStatus
Status = OrchestrationStatus

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
SEC = timedelta(seconds=1)

# kinds written by the orchestrator itself (outputs of an episode)
OUTPUT_KINDS = h.SCHEDULING_KINDS | {h.CONTINUED_AS_NEW, h.EXECUTION_COMPLETED}


# -- event shorthands (timestamps default to T0; run() restamps them with the episode's now) ------

def started(input: Any = None, *, name: str = "orch", version: str | None = None,
            generation: int = 0, parent: str | None = None, at: datetime = T0) -> HistoryEvent:
    return h.execution_started(name, input, at, version=version, parent_instance_id=parent,
                               parent_task_id=0 if parent else None, generation=generation)


def done(task_id: int, result: Any = None, at: datetime = T0) -> HistoryEvent:
    return h.task_completed(task_id, result, at)


def failed(task_id: int, message: str = "boom", error_type: str = "ValueError",
           at: datetime = T0) -> HistoryEvent:
    return h.task_failed(task_id, FailureDetails(message, error_type, "Traceback: ..."), at)


def fired(task_id: int, fire_at: datetime = T0, at: datetime = T0) -> HistoryEvent:
    return h.timer_fired(task_id, fire_at, at)


def sub_done(task_id: int, result: Any = None, at: datetime = T0) -> HistoryEvent:
    return h.sub_orchestration_completed(task_id, result, at)


def sub_failed(task_id: int, message: str = "child broke", error_type: str = "KeyError",
               at: datetime = T0) -> HistoryEvent:
    return h.sub_orchestration_failed(task_id, FailureDetails(message, error_type, None), at)


def raised(name: str, data: Any = None, at: datetime = T0) -> HistoryEvent:
    return h.event_raised(name, data, at)


def suspend(reason: str | None = None, at: datetime = T0) -> HistoryEvent:
    return h.execution_suspended(at, reason)


def resume(reason: str | None = None, at: datetime = T0) -> HistoryEvent:
    return h.execution_resumed(at, reason)


def terminate(output: Any = None, recursive: bool = True, at: datetime = T0) -> HistoryEvent:
    return h.execution_terminated(at, output, recursive)


# -- comparing episodes ------------------------------------------------------------------------

def event_key(event: HistoryEvent) -> tuple[Any, ...]:
    """An event without its timestamp."""
    return (event.seq, event.kind, event.task_id, event.name, event.data)


def kinds(events: Sequence[HistoryEvent]) -> list[str]:
    return [e.kind for e in events]


def failure_key(failure: FailureDetails | None) -> tuple[str, str] | None:
    return None if failure is None else (failure.message, failure.error_type)


def summary(result: EpisodeResult) -> dict[str, Any]:
    """Everything an episode produced, as comparable JSON-ish data."""
    can = result.continue_as_new
    return {
        "new_events": [e.to_json() for e in result.new_events],
        "actions": [action_to_json(a) for a in result.actions],
        "status": result.status,
        "output": result.output,
        "failure": failure_key(result.failure),
        "custom_status": result.custom_status,
        "continue_as_new": None if can is None else
        (can.input, can.version, [e.to_json() for e in can.carryover]),
        "discarded": [(e.to_json(), reason) for e, reason in result.discarded],
    }


def scheduling_actions(result: EpisodeResult) -> list[Action]:
    return [a for a in result.actions if not isinstance(a, TerminateOrchestration)]


def json_round_trip(history: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    text = json.dumps([e.to_json() for e in history])
    return [HistoryEvent.from_json(d) for d in json.loads(text)]


# -- the driver ---------------------------------------------------------------------------------

class Driver:
    """Runs one instance episode by episode and checks warm, cold and fresh replay agree."""

    def __init__(self, fn: Callable[..., Any], instance_id: str = "inst", *,
                 default_version: str | None = None, start: datetime = T0) -> None:
        self.fn = fn
        self.instance_id = instance_id
        self.default_version = default_version
        self.history: list[HistoryEvent] = []
        self.live = Orchestration(fn, instance_id, default_version=default_version)
        self.clock = start
        self.results: list[EpisodeResult] = []
        #: seq of each scheduling event -> the action emitted with it
        self.action_at: dict[int, Action] = {}

    @property
    def last(self) -> EpisodeResult:
        return self.results[-1]

    def fresh(self) -> Orchestration:
        return Orchestration(self.fn, self.instance_id, default_version=self.default_version)

    def run(self, *events: HistoryEvent, at: datetime | None = None) -> EpisodeResult:
        """One episode at ``at`` (default: one second after the previous episode)."""
        now = self.clock if at is None else at
        self.clock = now + SEC
        cold = execute(self.fn, self.instance_id, list(self.history), list(events), now,
                       default_version=self.default_version)
        warm = self.live.run(list(events), now)
        assert summary(warm) == summary(cold), "warm and cold episodes differ"
        first = len(self.history)
        assert [e.seq for e in warm.new_events] == list(range(first, first + len(warm.new_events)))
        scheduling = [e for e in warm.new_events if e.kind in h.SCHEDULING_KINDS]
        actions = scheduling_actions(warm)
        assert len(scheduling) == len(actions)
        for event, action in zip(scheduling, actions, strict=True):
            assert event.task_id == action.task_id
            self.action_at[event.seq] = action
        self.history.extend(warm.new_events)
        self.results.append(warm)
        self.check_fresh_replay(warm, now)
        return warm

    def check_fresh_replay(self, expected: EpisodeResult, now: datetime) -> None:
        for history in (self.history, json_round_trip(self.history)):
            orchestration = self.fresh()
            orchestration.replay(history)
            again = orchestration.run([], now)
            assert again.new_events == [] and again.actions == [], \
                f"a fresh replay produced {kinds(again.new_events)}"
            assert again.status == expected.status
            assert again.output == expected.output
            assert failure_key(again.failure) == failure_key(expected.failure)
            assert again.custom_status == expected.custom_status
            assert (again.continue_as_new is None) == (expected.continue_as_new is None)

    def check_prefixes(self) -> None:
        check_prefixes(self.fn, self.instance_id, self.history, self.action_at,
                       default_version=self.default_version, now=self.clock)


def check_prefixes(fn: Callable[..., Any], instance_id: str, history: Sequence[HistoryEvent],
                   action_at: dict[int, Action], *, default_version: str | None = None,
                   now: datetime = T0) -> None:
    """For every prefix ``history[:k]``: replay it, run no new event, and get exactly the outputs
    history records right after position k (and the actions that were emitted with them)."""
    for k in range(len(history) + 1):
        orchestration = Orchestration(fn, instance_id, default_version=default_version)
        orchestration.replay(history[:k])
        assert orchestration.history_length == k
        result = orchestration.run([], now)
        j = k
        while j < len(history) and history[j].kind in OUTPUT_KINDS:
            j += 1
        expected = history[k:j]
        assert [event_key(e) for e in result.new_events] == [event_key(e) for e in expected], \
            f"prefix {k}: replay produced {kinds(result.new_events)}, history has {kinds(expected)}"
        expected_actions = [action_at[e.seq] for e in expected if e.kind in h.SCHEDULING_KINDS]
        assert result.actions == expected_actions, f"prefix {k}"
