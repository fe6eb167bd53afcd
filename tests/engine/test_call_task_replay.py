"""ctx.call_task: scheduling existing Celery tasks, their results, failures, retries, replay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from replay_driver import SEC, T0, Driver, Status, done, failed, fired, started

from celery_durable.engine import (
    CreateTimer,
    Orchestration,
    OrchestrationContext,
    RetryPolicy,
    ScheduleActivity,
    ScheduleTask,
    action_from_json,
    action_to_json,
)
from celery_durable.engine import history as h
from celery_durable.engine.actions import scheduled_task_of
from celery_durable.errors import TaskFailedError


class FakeCeleryTask:  # what the engine reads of a Celery task: its name (duck typing)
    name = "billing.tasks.charge"


@dataclass
class Order:
    sku: str
    total: int


def test_call_task_schedules_the_task_with_its_own_args_and_options() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        a = ctx.call_task(FakeCeleryTask(), args=(Order("lamp", 3), 2), kwargs={"vip": True},
                          queue="billing", priority=5, countdown=1.5)
        b = ctx.call_task("reports.build")
        return (yield ctx.when_all([a, b]))

    d = Driver(orch)
    result = d.run(started())
    assert result.actions == [
        ScheduleTask(0, "billing.tasks.charge", [{"sku": "lamp", "total": 3}, 2], {"vip": True},
                     {"queue": "billing", "priority": 5, "countdown": 1.5}, 1),
        ScheduleTask(1, "reports.build", [], {}, {}, 1)]
    scheduled = [e for e in result.new_events if e.kind == h.TASK_SCHEDULED]
    assert [(e.task_id, e.name) for e in scheduled] == [(0, "billing.tasks.charge"),
                                                        (1, "reports.build")]
    assert scheduled[0].data == {"celery_task": True, "args": [{"sku": "lamp", "total": 3}, 2],
                                 "kwargs": {"vip": True},
                                 "options": {"queue": "billing", "priority": 5,
                                             "countdown": 1.5}, "attempt": 1}
    for action, event in zip(result.actions, scheduled, strict=True):
        assert scheduled_task_of(event.task_id, event.name, event.data) == action
        assert action_from_json(action_to_json(action)) == action
    end = d.run(done(0, {"charged": 3}), done(1, "report.pdf"))
    assert end.status is Status.COMPLETED
    assert end.output == [{"charged": 3}, "report.pdf"]
    d.check_prefixes()


def test_an_activity_event_is_not_a_task_call() -> None:
    assert scheduled_task_of(0, "charge", {"input": 1, "attempt": 1}) is None


def test_a_final_failure_raises_task_failed_error_with_the_remote_details() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.call_task("billing.charge", args=[1])
        except TaskFailedError as exc:
            return [exc.details.error_type, exc.details.message, str(exc)]

    d = Driver(orch)
    d.run(started())
    end = d.run(failed(0, "card declined", "CardDeclined"))
    assert end.status is Status.COMPLETED
    assert end.output == ["CardDeclined", "card declined",
                          "Celery task 'billing.charge' failed: CardDeclined: card declined"]


def test_an_uncaught_failure_fails_the_instance() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_task("billing.charge")

    d = Driver(orch)
    d.run(started())
    end = d.run(failed(0, "card declined", "CardDeclined"))
    assert end.status is Status.FAILED
    assert end.failure is not None and end.failure.error_type == "TaskFailedError"
    assert "Celery task 'billing.charge' failed: CardDeclined: card declined" in \
        end.failure.message


def test_retry_policy_sends_a_new_attempt_after_a_durable_timer() -> None:
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=5), max_number_of_attempts=2)

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            return (yield ctx.call_task("flaky", args=[7], retry_policy=policy, queue="q"))
        except TaskFailedError as exc:
            return f"gave up: {exc.details.message}"

    d = Driver(orch)
    assert d.run(started()).actions == [ScheduleTask(0, "flaky", [7], {}, {"queue": "q"}, 1)]
    retry = d.run(failed(0, "first"), at=T0 + SEC)
    assert retry.actions == [CreateTimer(1, T0 + 6 * SEC)]
    again = d.run(fired(1, T0 + 6 * SEC), at=T0 + 6 * SEC)
    assert again.actions == [ScheduleTask(2, "flaky", [7], {}, {"queue": "q"}, 2)]
    assert again.new_events[-1].data["attempt"] == 2
    end = d.run(failed(2, "second"), at=T0 + 7 * SEC)
    assert end.status is Status.COMPLETED and end.output == "gave up: second"
    d.check_prefixes()


def test_swapping_the_called_task_is_nondeterministic() -> None:
    def before(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_task("billing.charge"))

    def other_task(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_task("billing.refund"))

    def an_activity_now(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("billing.charge"))

    d = Driver(before)
    d.run(started())
    for changed, what in ((other_task, "Celery task 'billing.refund'"),
                          (an_activity_now, "activity 'billing.charge'")):
        state = Orchestration(changed, "inst")
        state.replay(d.history)
        result = state.run([done(0, 1)], T0 + SEC)
        assert result.status is Status.FAILED
        assert result.failure is not None
        assert result.failure.error_type == "NonDeterminismError"
        assert "TaskScheduled 'billing.charge'" in result.failure.message
        assert what in result.failure.message


def test_an_activity_swapped_for_a_task_call_of_the_same_name_is_nondeterministic() -> None:
    def before(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("charge"))

    def after(ctx: OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_task("charge"))

    d = Driver(before)
    assert d.run(started()).actions == [ScheduleActivity(0, "charge", None, 1)]
    state = Orchestration(after, "inst")
    state.replay(d.history)
    result = state.run([], T0 + SEC)
    assert result.failure is not None and result.failure.error_type == "NonDeterminismError"
    assert "Celery task 'charge'" in result.failure.message


@pytest.mark.parametrize(("call", "message"), [
    (lambda ctx: ctx.call_task("t", link="x"), "does not take the Celery option link="),
    (lambda ctx: ctx.call_task("t", task_id="x"), "does not take the Celery option task_id="),
    (lambda ctx: ctx.call_task("t", serializer="pickle"),
     "does not take the Celery option serializer="),
    (lambda ctx: ctx.call_task("t", colour="red"), "unknown option colour="),
    (lambda ctx: ctx.call_task("t", expires=T0), "is not a JSON value"),
    (lambda ctx: ctx.call_task("t", args="abc"), "must be a list or tuple"),
    (lambda ctx: ctx.call_task("t", kwargs=[1]), "must be a dict"),
    (lambda ctx: ctx.call_task("t", args=[{1, 2}]), "arguments of Celery task 't' is not "
                                                    "JSON-serialisable: value at $.args[0]"),
    (lambda ctx: ctx.call_task(""), "needs a task name"),
    (lambda ctx: ctx.call_task(object()), "takes a Celery task"),
])
def test_bad_calls_fail_the_instance_before_anything_is_scheduled(call: Any,
                                                                  message: str) -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield call(ctx)

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.actions == []
    assert result.failure is not None and message in result.failure.message, \
        result.failure


def test_an_activity_given_to_call_task_is_refused() -> None:
    def charge(ctx: Any, order: Any) -> Any:
        return order

    charge.__durable_name__ = "shop.charge"  # type: ignore[attr-defined]

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_task(charge)

    result = Driver(orch).run(started())
    assert result.failure is not None
    assert "'shop.charge' is an activity: call it with ctx.call_activity" in \
        result.failure.message
