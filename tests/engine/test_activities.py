"""Activities and sub-orchestrations: scheduling, results, failures, child instance ids, versions."""

from __future__ import annotations

from typing import Any

import pytest
from replay_driver import Driver, done, failed, started, sub_done, sub_failed

from celery_durable.engine import (
    OrchestrationContext,
    OrchestrationStatus,
    ScheduleActivity,
    ScheduleSubOrchestration,
)
from celery_durable.engine import history as h
from celery_durable.errors import PayloadError, TaskFailedError

Status = OrchestrationStatus


def charge(ctx: Any, order: Any) -> Any:  # an activity passed by function
    return order


def child_flow(ctx: Any, value: Any) -> Any:  # an orchestrator passed by function
    return value


def test_activity_given_as_function_or_name_and_its_input() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        a = ctx.call_activity(charge, input={"total": 3})
        b = ctx.call_activity("refund")
        return (yield ctx.when_all([a, b]))

    d = Driver(orch)
    result = d.run(started())
    assert result.actions == [ScheduleActivity(0, "charge", {"total": 3}, 1),
                              ScheduleActivity(1, "refund", None, 1)]
    assert [(e.seq, e.kind, e.task_id, e.name) for e in result.new_events] == [
        (0, h.EXECUTION_STARTED, None, "orch"), (1, h.TASK_SCHEDULED, 0, "charge"),
        (2, h.TASK_SCHEDULED, 1, "refund")]


def test_decorated_name_is_used_for_activities() -> None:
    def impl(ctx: Any, _: Any) -> None:
        return None

    impl.__durable_name__ = "billing.charge"  # type: ignore[attr-defined]

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity(impl)

    assert Driver(orch).run(started()).actions == [ScheduleActivity(0, "billing.charge", None, 1)]


def test_bad_activity_arguments_fail_the_instance_with_clear_errors() -> None:
    def empty_name(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("")

    def bad_input(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a", input=object())

    result = Driver(empty_name).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "ValueError"
    assert "activity name must not be empty" in result.failure.message
    result = Driver(bad_input).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == PayloadError.__name__
    assert "input of activity 'a'" in result.failure.message
    assert result.actions == []


def test_activity_failure_raises_task_failed_error_at_the_yield_and_can_be_caught() -> None:
    caught: list[TaskFailedError] = []

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.call_activity("charge")
        except TaskFailedError as exc:
            caught.append(exc)
            fallback = yield ctx.call_activity("refund")
            return f"recovered with {fallback}"
        return "not reached"

    d = Driver(orch)
    d.run(started())
    result = d.run(failed(0, "card declined", "PaymentError"))
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleActivity(1, "refund", None, 1)]
    exc = caught[-1]
    assert exc.details.message == "card declined"
    assert exc.details.error_type == "PaymentError"
    assert exc.details.stack_trace == "Traceback: ..."
    assert "activity 'charge' failed" in str(exc) and "card declined" in str(exc)
    result = d.run(done(1, "ok"))
    assert result.status is Status.COMPLETED and result.output == "recovered with ok"
    d.check_prefixes()


def test_uncaught_activity_failure_fails_the_instance() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("charge")
        return "unreachable"

    d = Driver(orch)
    d.run(started())
    result = d.run(failed(0, "card declined", "PaymentError"))
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "TaskFailedError"
    assert "activity 'charge' failed" in result.failure.message
    assert "PaymentError: card declined" in result.failure.message
    assert result.new_events[-1].data["status"] == "FAILED"


def test_sub_orchestration_ids_are_deterministic_and_version_defaults() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("first")
        a = ctx.call_sub_orchestrator(child_flow, input=1)
        b = ctx.call_sub_orchestrator("child", input=2, instance_id="explicit-id", version="9")
        return (yield ctx.when_all([a, b]))

    d = Driver(orch, "parent", default_version="3")
    d.run(started())
    result = d.run(done(0))
    assert result.actions == [
        ScheduleSubOrchestration(1, "child_flow", "parent:1", 1, "3"),
        ScheduleSubOrchestration(2, "child", "explicit-id", 2, "9"),
    ]
    created = result.new_events[1:]
    assert [(e.kind, e.task_id, e.name, e.data) for e in created] == [
        (h.SUB_ORCHESTRATION_CREATED, 1, "child_flow",
         {"instance_id": "parent:1", "input": 1, "version": "3"}),
        (h.SUB_ORCHESTRATION_CREATED, 2, "child",
         {"instance_id": "explicit-id", "input": 2, "version": "9"}),
    ]
    d.run(sub_done(2, "b"))
    result = d.run(sub_done(1, "a"))
    assert result.status is Status.COMPLETED and result.output == ["a", "b"]
    d.check_prefixes()


def test_sub_orchestration_version_is_none_without_default() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_sub_orchestrator("child")

    result = Driver(orch, "p").run(started())
    assert result.actions == [ScheduleSubOrchestration(0, "child", "p:0", None, None)]


def test_child_ids_include_the_generation_after_continue_as_new() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        yield ctx.call_sub_orchestrator("child")

    d = Driver(orch, "loop")
    d.run(started(generation=2))
    result = d.run(done(0))
    assert result.actions == [ScheduleSubOrchestration(1, "child", "loop:2:1", None, None)]


def test_sub_orchestration_failure_raises_task_failed_error() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.call_sub_orchestrator("child")
        except TaskFailedError as exc:
            return [exc.details.message, exc.details.error_type, str(exc)]
        return None

    d = Driver(orch, "p")
    d.run(started())
    result = d.run(sub_failed(0, "no such key", "KeyError"))
    assert result.status is Status.COMPLETED
    assert result.output == ["no such key", "KeyError",
                             "sub-orchestration 'child' failed: KeyError: no such key"]


def test_uncaught_sub_orchestration_failure_fails_the_parent() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_sub_orchestrator("child")

    d = Driver(orch, "p")
    d.run(started())
    result = d.run(sub_failed(0, "no such key", "KeyError"))
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "TaskFailedError"
    assert "sub-orchestration 'child' failed" in result.failure.message


def test_activity_results_are_json_and_objects_have_attribute_access() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        receipt = yield ctx.call_activity("charge")
        return [receipt.amount, receipt.currency]

    d = Driver(orch)
    d.run(started())
    result = d.run(done(0, {"__durable_object__": True, "amount": 5, "currency": "EUR"}))
    assert result.output == [5, "EUR"]


@pytest.mark.parametrize("target", [None, 3, object()])
def test_activity_target_must_be_a_name_or_function(target: Any) -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity(target)

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "TypeError"
    assert "activity must be a function decorated with @activity" in result.failure.message
