"""Events that must not be applied: duplicates, unknown task ids, events after the end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from replay_driver import (
    T0,
    Driver,
    Status,
    done,
    failed,
    fired,
    raised,
    started,
    sub_done,
    sub_failed,
)

from celery_durable.engine import HistoryEvent, OrchestrationContext
from celery_durable.engine import history as h


def _pair(ctx: OrchestrationContext, _: Any) -> Any:
    a = ctx.call_activity("a")
    b = ctx.call_activity("b")
    return (yield ctx.when_all([a, b]))


def _reasons(discarded: list[tuple[HistoryEvent, str]]) -> list[tuple[str, int | None, str]]:
    return [(e.kind, e.task_id, reason) for e, reason in discarded]


def test_duplicate_completions_are_discarded_not_appended() -> None:
    d = Driver(_pair)
    d.run(started())
    result = d.run(done(0, "first"), done(0, "second"))
    assert [(e.kind, e.task_id, e.data) for e in result.new_events] == [
        (h.TASK_COMPLETED, 0, "first")]
    assert _reasons(result.discarded) == [
        (h.TASK_COMPLETED, 0, "duplicate: task 0 has already completed")]
    result = d.run(failed(0), done(0, "third"), done(1, "b"))
    assert [(e.kind, e.task_id) for e in result.new_events] == [
        (h.TASK_COMPLETED, 1), (h.EXECUTION_COMPLETED, None)]
    assert result.output == ["first", "b"]
    assert _reasons(result.discarded) == [
        (h.TASK_FAILED, 0, "duplicate: task 0 has already completed"),
        (h.TASK_COMPLETED, 0, "duplicate: task 0 has already completed")]
    d.check_prefixes()


@pytest.mark.parametrize("event", [
    done(7), failed(7), fired(7), sub_done(7), sub_failed(7)])
def test_completion_for_an_unknown_task_id_is_discarded_with_a_reason(event: HistoryEvent) -> None:
    d = Driver(_pair)
    d.run(started())
    result = d.run(event)
    assert result.new_events == [] and result.actions == []
    assert result.status is Status.RUNNING
    [(discarded, reason)] = result.discarded
    assert discarded is event
    assert reason == ("unknown task id 7: this execution never scheduled it "
                      "(a stale message from an earlier execution?)")


def test_completion_before_the_start_is_unknown() -> None:
    d = Driver(_pair)
    result = d.run(done(0, "early"), started())
    assert result.discarded[0][1].startswith("unknown task id 0")
    assert [e.kind for e in result.new_events] == [
        h.EXECUTION_STARTED, h.TASK_SCHEDULED, h.TASK_SCHEDULED]


def test_events_after_the_end_are_discarded() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("a"))

    d = Driver(orch)
    d.run(started())
    result = d.run(done(0, "x"), raised("late"), done(0, "dup"))
    assert result.status is Status.COMPLETED
    assert [e.kind for e in result.new_events] == [h.TASK_COMPLETED, h.EXECUTION_COMPLETED]
    assert [r for _, r in result.discarded] == ["the instance has already ended (COMPLETED)"] * 2
    later = d.run(raised("later"), started(), h.execution_suspended(T0))
    assert later.new_events == [] and later.status is Status.COMPLETED
    assert [r for _, r in later.discarded] == ["the instance has already ended (COMPLETED)"] * 3


def test_a_second_start_is_discarded() -> None:
    d = Driver(_pair)
    d.run(started(1))
    result = d.run(started(2))
    assert result.new_events == []
    assert _reasons(result.discarded) == [
        (h.EXECUTION_STARTED, None, "the instance has already started")]


@pytest.mark.parametrize("kind", sorted(h.SCHEDULING_KINDS | {h.CONTINUED_AS_NEW,
                                                              h.EXECUTION_COMPLETED}))
def test_events_only_the_orchestrator_writes_cannot_arrive(kind: str) -> None:
    d = Driver(_pair)
    d.run(started())
    event = HistoryEvent(-1, kind, T0, 0, "a", {})
    result = d.run(event)
    assert result.new_events == []
    assert result.discarded == [
        (event, f"{kind} is written by the orchestrator, it cannot arrive as a new event")]


def test_late_completion_of_a_when_any_loser_is_accepted_once() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        winner = yield ctx.when_any([ctx.call_activity("a"), ctx.create_timer(timedelta(hours=1))])
        yield ctx.wait_for_external_event("end")
        return winner.get_result()

    d = Driver(orch)
    d.run(started())
    d.run(done(0, "a"))
    loser = d.run(fired(1, T0 + timedelta(hours=1)))
    assert [e.kind for e in loser.new_events] == [h.TIMER_FIRED] and loser.discarded == []
    again = d.run(fired(1, T0 + timedelta(hours=1)))
    assert again.new_events == []
    assert again.discarded[0][1] == "duplicate: task 1 has already completed"
    assert d.run(raised("end")).output == "a"
    d.check_prefixes()


def test_completion_of_the_wrong_kind_is_discarded() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.create_timer(timedelta(minutes=1)))

    d = Driver(orch)
    d.run(started())
    result = d.run(done(0, "not a timer result"))
    assert result.new_events == [] and result.status is Status.RUNNING
    assert len(result.discarded) == 1
