"""Replay that does not match history fails the instance with NonDeterminismError."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from replay_driver import T0, Driver, done, raised, started

from celery_durable.engine import (
    EpisodeResult,
    HistoryEvent,
    Orchestration,
    OrchestrationContext,
    OrchestrationStatus,
)
from celery_durable.engine import history as h

Status = OrchestrationStatus


def _history(fn: Callable[..., Any], *episodes: list[HistoryEvent]) -> list[HistoryEvent]:
    d = Driver(fn)
    for events in episodes:
        d.run(*events)
    return d.history


def _replay_with(fn: Callable[..., Any], history: list[HistoryEvent],
                 *new: HistoryEvent) -> EpisodeResult:
    orchestration = Orchestration(fn, "inst")
    orchestration.replay(history)
    return orchestration.run(list(new), T0 + timedelta(days=1))


def _assert_nondeterministic(result: EpisodeResult, history: list[HistoryEvent],
                             *fragments: str) -> str:
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "NonDeterminismError"
    for fragment in fragments:
        assert fragment in result.failure.message, result.failure.message
    assert result.actions == []
    # the failure is recorded after the whole existing history
    assert [(e.seq, e.kind) for e in result.new_events] == [(len(history), h.EXECUTION_COMPLETED)]
    end = result.new_events[0].data
    assert end["status"] == "FAILED"
    assert end["failure"]["error_type"] == "NonDeterminismError"
    return result.failure.message


def _v1(ctx: OrchestrationContext, _: Any) -> Any:
    a = yield ctx.call_activity("charge")
    b = yield ctx.call_activity("ship")
    return [a, b]


def test_other_activity_name() -> None:
    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("bill")

    history = _history(_v1, [started()], [done(0, "A")])
    result = _replay_with(v2, history, done(1, "B"))
    message = _assert_nondeterministic(result, history)
    assert message == ("history has TaskScheduled 'charge' (task 0) at seq 1 but the code "
                       "scheduled activity 'bill' (task 0)")
    # the new event is not applied to a failed instance
    assert [e.kind for e, _ in result.discarded] == [h.TASK_COMPLETED]
    assert "already ended (FAILED)" in result.discarded[0][1]


def test_other_kind_of_action() -> None:
    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("charge")
        yield ctx.create_timer(timedelta(seconds=5))

    history = _history(_v1, [started()], [done(0, "A")])
    result = _replay_with(v2, history)
    _assert_nondeterministic(result, history, "history has TaskScheduled 'ship' (task 1) at seq 3",
                             "the code scheduled a timer (task 1)")


def test_sub_orchestration_instead_of_activity() -> None:
    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_sub_orchestrator("charge")

    history = _history(_v1, [started()])
    result = _replay_with(v2, history, done(0))
    _assert_nondeterministic(result, history, "TaskScheduled 'charge' (task 0)",
                             "sub-orchestration 'charge' (task 0)")


def test_fewer_actions_than_history() -> None:
    def v1(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.when_all([ctx.call_activity("a"), ctx.call_activity("b")]))

    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("a"))

    history = _history(v1, [started()])
    result = _replay_with(v2, history, done(0))
    _assert_nondeterministic(
        result, history, "history has TaskScheduled 'b' (task 1) at seq 2 but the code did not "
        "schedule it (it is waiting on <CompletableTask activity 'a'>)")


def test_code_that_finishes_where_history_schedules() -> None:
    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        return "done early"

    history = _history(_v1, [started()])
    result = _replay_with(v2, history)
    _assert_nondeterministic(result, history, "history has TaskScheduled 'charge' (task 0)",
                             "did not schedule it (it finished with status COMPLETED)")


def test_more_actions_than_history() -> None:
    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        a = ctx.call_activity("charge")
        ctx.call_activity("audit")
        yield a
        yield ctx.call_activity("ship")

    history = _history(_v1, [started()], [done(0, "A")])
    result = _replay_with(v2, history)
    _assert_nondeterministic(
        result, history,
        "the code scheduled activity 'audit' (task 1) but history has TaskCompleted (task 0) "
        "at seq 2 at that point")


def test_code_finished_but_history_continues() -> None:
    def v1(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        yield ctx.wait_for_external_event("go")
        return "end"

    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        return "shortcut"

    history = _history(v1, [started()], [done(0)], [raised("go")])
    assert history[-1].kind == h.EXECUTION_COMPLETED
    result = _replay_with(v2, history[:-1])
    _assert_nondeterministic(result, history[:-1], "the code finished with status COMPLETED but "
                             "history continues with EventRaised 'go' at seq 3")


def test_history_completed_but_code_still_waits() -> None:
    def v1(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("a"))

    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        yield ctx.wait_for_external_event("approval")

    history = _history(v1, [started()], [done(0)])
    cut = history[:-1] + [history[-1]]
    orchestration = Orchestration(v2, "inst")
    orchestration.replay(cut)
    assert orchestration.status is Status.FAILED
    result = orchestration.run([], T0)
    assert result.failure is not None and result.failure.message == (
        "history has ExecutionCompleted at seq 3 but the code has not finished (it is waiting "
        "on <CompletableTask external event 'approval'>)")


def test_same_code_replays_cleanly_even_with_other_inputs_in_calls() -> None:
    """Only kinds, names and order are compared, not inputs (like durabletask)."""

    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        a = yield ctx.call_activity("charge", input="changed")
        b = yield ctx.call_activity("ship")
        return [a, b]

    history = _history(_v1, [started()], [done(0, "A")])
    result = _replay_with(v2, history, done(1, "B"))
    assert result.status is Status.COMPLETED and result.output == ["A", "B"]


def test_nondeterminism_in_the_middle_of_a_long_history_does_not_reuse_seqs() -> None:
    """Regression: after a mismatch early in history, the executor numbered its new events from
    the mismatching event, so the FAILED end collided with seqs already in history."""

    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("other")

    def v1(ctx: OrchestrationContext, _: Any) -> Any:
        for i in range(5):
            yield ctx.call_activity("step", input=i)

    history = _history(v1, [started()], *[[done(i)] for i in range(4)])
    assert len(history) == 10
    result = _replay_with(v2, history, done(4))
    _assert_nondeterministic(result, history, "TaskScheduled 'step' (task 0) at seq 1")
    assert result.new_events[0].timestamp >= history[-1].timestamp


# unfinished generators that yield in finally make Python warn when they are collected
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_mismatch_in_an_orchestrator_that_yields_in_finally_fails_cleanly() -> None:
    def v1(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.call_activity("work")
        finally:
            yield ctx.call_activity("release")

    def v2(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.call_activity("other work")
        finally:
            yield ctx.call_activity("release")

    history = _history(v1, [started()])
    result = _replay_with(v2, history)
    _assert_nondeterministic(result, history, "history has TaskScheduled 'work' (task 0)",
                             "activity 'other work' (task 0)")
