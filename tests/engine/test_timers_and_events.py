"""Durable timers, external events, when_all and when_any."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from replay_driver import SEC, T0, Driver, done, failed, fired, raised, started

from celery_durable.engine import (
    CreateTimer,
    OrchestrationContext,
    OrchestrationStatus,
    ScheduleActivity,
    when_all,
    when_any,
)
from celery_durable.engine import history as h
from celery_durable.errors import TaskFailedError

Status = OrchestrationStatus


# -- timers -----------------------------------------------------------------------------------------

def test_timer_from_timedelta_uses_the_replayed_current_time() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        yield ctx.create_timer(timedelta(hours=1))
        return ctx.current_utc_datetime.isoformat()

    d = Driver(orch)
    d.run(started(), at=T0)
    result = d.run(done(0), at=T0 + timedelta(minutes=5))
    expected = T0 + timedelta(minutes=5, hours=1)
    assert result.actions == [CreateTimer(1, expected)]
    created = result.new_events[-1]
    assert (created.kind, created.task_id, created.name) == (h.TIMER_CREATED, 1, None)
    assert created.data == {"fire_at": expected.isoformat()}
    assert created.timestamp == T0 + timedelta(minutes=5)
    result = d.run(fired(1, expected), at=expected + SEC)
    assert result.status is Status.COMPLETED
    assert result.output == (expected + SEC).isoformat()
    d.check_prefixes()


def test_timer_from_datetime_aware_or_naive_is_utc() -> None:
    paris = timezone(timedelta(hours=2))

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.create_timer(datetime(2024, 6, 1, 14, 0, tzinfo=paris))
        yield ctx.create_timer(datetime(2024, 6, 2, 9, 30))

    d = Driver(orch)
    assert d.run(started()).actions == [
        CreateTimer(0, datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc))]
    assert d.run(fired(0)).actions == [
        CreateTimer(1, datetime(2024, 6, 2, 9, 30, tzinfo=timezone.utc))]


def test_timer_with_a_wrong_argument_fails_the_instance() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.create_timer(60)

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "TypeError"
    assert "create_timer takes a datetime or a timedelta" in result.failure.message


def test_current_time_during_replay_is_each_events_timestamp() -> None:
    seen: list[tuple[bool, datetime]] = []

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        seen.append((ctx.is_replaying, ctx.current_utc_datetime))
        yield ctx.call_activity("a")
        seen.append((ctx.is_replaying, ctx.current_utc_datetime))
        yield ctx.call_activity("b")
        seen.append((ctx.is_replaying, ctx.current_utc_datetime))

    d = Driver(orch)
    d.run(started(at=T0 - timedelta(days=3)), at=T0)
    d.run(done(0, at=T0 - timedelta(days=3)), at=T0 + timedelta(minutes=1))
    seen.clear()
    fresh = d.fresh()
    fresh.replay(d.history)
    fresh.run([done(1)], T0 + timedelta(minutes=2))
    assert seen == [(True, T0), (True, T0 + timedelta(minutes=1)),
                    (False, T0 + timedelta(minutes=2))]


def test_time_never_goes_backwards() -> None:
    times: list[datetime] = []

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        times.append(ctx.current_utc_datetime)

    d = Driver(orch)
    d.run(started(), at=T0)
    result = d.run(done(0), at=T0 - timedelta(hours=1))
    assert times[-1] == T0
    assert [e.timestamp for e in result.new_events] == [T0, T0]


# -- external events --------------------------------------------------------------------------------

def test_event_names_are_case_insensitive() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.wait_for_external_event("Approval"))

    d = Driver(orch)
    first = d.run(started())
    assert first.actions == [] and first.status is Status.RUNNING
    ignored = d.run(raised("other", 1))
    assert ignored.status is Status.RUNNING and ignored.new_events[0].kind == h.EVENT_RAISED
    result = d.run(raised("APPROVAL", {"by": "ann"}))
    assert result.status is Status.COMPLETED and result.output == {"by": "ann"}
    assert result.new_events[0].name == "APPROVAL"


def test_events_raised_before_the_wait_are_buffered_in_order() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        first = yield ctx.wait_for_external_event("item")
        second = yield ctx.wait_for_external_event("ITEM")
        third = yield ctx.wait_for_external_event("item")
        return [first, second, third]

    d = Driver(orch)
    d.run(raised("Item", 1))  # even before the instance starts
    d.run(started())
    d.run(raised("item", 2))
    result = d.run(done(0))
    assert result.status is Status.RUNNING and result.actions == []
    result = d.run(raised("iTeM", 3))
    assert result.status is Status.COMPLETED and result.output == [1, 2, 3]
    d.check_prefixes()


def test_several_waits_for_the_same_name_complete_in_order() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        first = ctx.wait_for_external_event("vote")
        second = ctx.wait_for_external_event("Vote")
        other = ctx.wait_for_external_event("other")
        results = yield ctx.when_all([second, first, other])
        return results

    d = Driver(orch)
    d.run(started())
    d.run(raised("vote", "a"), raised("other", "o"))
    result = d.run(raised("VOTE", "b"))
    assert result.output == ["b", "a", "o"]


def test_buffered_event_data_is_decoded_like_delivered_event_data() -> None:
    """Regression: an event raised before its wait came back as the raw stored dict."""

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        data = yield ctx.wait_for_external_event("obj")
        return [type(data).__name__, data.amount]

    stored = {"__durable_object__": True, "amount": 7}
    late = Driver(orch)
    late.run(started())
    late.run(done(0))
    assert late.run(raised("obj", stored)).output == ["AttrObject", 7]
    early = Driver(orch)
    early.run(started())
    early.run(raised("obj", stored))
    result = early.run(done(0))
    assert result.status is Status.COMPLETED, result.failure
    assert result.output == ["AttrObject", 7]


def test_empty_event_name_fails_the_instance() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.wait_for_external_event("")

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and "event name must be a non-empty string" in \
        result.failure.message


# -- when_all -----------------------------------------------------------------------------------------

def test_when_all_returns_results_in_task_order_whatever_the_completion_order() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        tasks = [ctx.call_activity("work", input=i) for i in range(4)]
        return (yield when_all(tasks))

    d = Driver(orch)
    first = d.run(started())
    assert first.actions == [ScheduleActivity(i, "work", i, 1) for i in range(4)]
    assert d.run(done(2, "c"), done(0, "a")).status is Status.RUNNING
    assert d.run(done(3, "d")).actions == []
    result = d.run(done(1, "b"))
    assert result.status is Status.COMPLETED and result.output == ["a", "b", "c", "d"]
    d.check_prefixes()


def test_when_all_of_nothing_completes_at_once() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.when_all([]))

    assert Driver(orch).run(started()).output == []


def test_when_all_fails_with_the_first_failure_and_later_completions_are_ignored() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        tasks = [ctx.call_activity("work", input=i) for i in range(3)]
        try:
            yield ctx.when_all(tasks)
        except TaskFailedError as exc:
            after = yield ctx.call_activity("cleanup")
            return [exc.details.message, after, tasks[0].is_complete]
        return None

    d = Driver(orch)
    d.run(started())
    d.run(done(0, "a"))
    result = d.run(failed(1, "w1 broke"))
    assert result.actions == [ScheduleActivity(3, "cleanup", None, 1)]
    late = d.run(done(2, "c"))
    assert late.new_events[0].kind == h.TASK_COMPLETED and late.discarded == []
    assert late.status is Status.RUNNING and late.actions == []
    result = d.run(done(3, "clean"))
    assert result.output == ["w1 broke", "clean", True]
    d.check_prefixes()


def test_when_all_rejects_things_that_are_not_tasks() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.when_all([ctx.call_activity("a"), "b"])

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and "when_all/when_any take tasks, got str" in \
        result.failure.message


# -- when_any -----------------------------------------------------------------------------------------

def _approval_or_timeout(ctx: OrchestrationContext, _: Any) -> Any:
    approval = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(hours=1))
    winner = yield ctx.when_any([approval, timeout])
    if winner == timeout:
        result = "timed out"
    else:
        assert winner == approval
        result = f"approved by {winner.get_result()}"
    final = yield ctx.call_activity("finish", input=result)
    return final


def test_when_any_returns_the_winning_task_by_identity_timeout_wins() -> None:
    d = Driver(_approval_or_timeout)
    first = d.run(started(), at=T0)
    assert first.actions == [CreateTimer(0, T0 + timedelta(hours=1))]
    result = d.run(fired(0, T0 + timedelta(hours=1)))
    assert result.actions == [ScheduleActivity(1, "finish", "timed out", 1)]
    # the losing wait is left pending: a late approval is accepted and changes nothing
    late = d.run(raised("approval", "bob"))
    assert late.new_events[0].kind == h.EVENT_RAISED and late.actions == []
    assert late.status is Status.RUNNING
    result = d.run(done(1, "ok"))
    assert result.status is Status.COMPLETED and result.output == "ok"
    d.check_prefixes()


def test_when_any_event_wins_and_the_losing_timer_fires_later_without_harm() -> None:
    d = Driver(_approval_or_timeout)
    d.run(started(), at=T0)
    result = d.run(raised("Approval", "ann"))
    assert result.actions == [ScheduleActivity(1, "finish", "approved by ann", 1)]
    late = d.run(fired(0, T0 + timedelta(hours=1)))
    assert [e.kind for e in late.new_events] == [h.TIMER_FIRED]
    assert late.discarded == [] and late.actions == [] and late.status is Status.RUNNING
    result = d.run(done(1, "ok"))
    assert result.status is Status.COMPLETED
    d.check_prefixes()


def test_when_any_result_stays_the_winner_after_a_loser_completes() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        a = ctx.call_activity("a")
        b = ctx.call_activity("b")
        race = ctx.when_any([a, b])
        winner = yield race
        yield ctx.wait_for_external_event("end")
        return [winner is a, race.get_result() is winner, b.is_complete, b.get_result()]

    d = Driver(orch)
    d.run(started())
    d.run(done(0, "a"))
    d.run(done(1, "b"))
    assert d.run(raised("end")).output == [True, True, True, "b"]


def test_when_any_with_a_failed_winner_returns_the_failed_task() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        a = ctx.call_activity("a")
        b = ctx.call_activity("b")
        winner = yield when_any([a, b])
        assert winner is a
        try:
            winner.get_result()
        except TaskFailedError as exc:
            return ["a failed", exc.details.message, winner.is_failed, b.is_complete]
        return None

    d = Driver(orch)
    d.run(started())
    result = d.run(failed(0, "a broke"), done(1, "b"))
    assert result.output == ["a failed", "a broke", True, False]


def test_when_any_of_an_already_complete_task_completes_at_once() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("first")
        early = ctx.wait_for_external_event("early")
        timer = ctx.create_timer(timedelta(days=1))
        winner = yield ctx.when_any([timer, early])
        return winner.get_result() if winner is early else "timer"

    d = Driver(orch)
    d.run(started())
    d.run(raised("early", "here"))
    result = d.run(done(0))
    assert result.status is Status.COMPLETED and result.output == "here"
    # the timer was still scheduled (its action is recorded) although nobody waits for it
    assert [e.kind for e in result.new_events] == [
        h.TASK_COMPLETED, h.TIMER_CREATED, h.EXECUTION_COMPLETED]


def test_when_any_of_nothing_fails() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.when_any([])

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.message == "when_any needs at least one task"


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_when_any_in_a_loop_of_rounds(order: tuple[int, int]) -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        wins = []
        for round_ in range(2):
            a = ctx.call_activity("fast", input=round_)
            b = ctx.call_activity("slow", input=round_)
            winner = yield ctx.when_any([a, b])
            wins.append("fast" if winner is a else "slow")
        return wins

    d = Driver(orch)
    d.run(started())
    d.run(done(order[0]))
    d.run(done(order[1]))  # the loser of round 0
    result = d.run(done(3), done(2))
    assert result.output == ["fast" if order[0] == 0 else "slow", "slow"]
    d.check_prefixes()
