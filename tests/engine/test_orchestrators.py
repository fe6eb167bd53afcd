"""Orchestrator shapes: generators, plain functions, one-argument functions, typed input, failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replay_driver import T0, Driver, done, kinds, started

from celery_durable.engine import OrchestrationContext, OrchestrationStatus, ScheduleActivity
from celery_durable.engine import history as h
from celery_durable.payload import to_json

Status = OrchestrationStatus


def test_generator_result_of_activity_is_sent_back_and_return_value_is_output() -> None:
    def orch(ctx: OrchestrationContext, order: Any) -> Any:
        receipt = yield ctx.call_activity("charge", input=order)
        shipped = yield ctx.call_activity("ship", input=receipt)
        return {"receipt": receipt, "shipped": shipped}

    d = Driver(orch)
    first = d.run(started({"total": 10}, name="process"))
    assert kinds(first.new_events) == [h.EXECUTION_STARTED, h.TASK_SCHEDULED]
    assert first.new_events[0].name == "process"
    assert first.new_events[1].task_id == 0 and first.new_events[1].name == "charge"
    assert first.new_events[1].data == {"input": {"total": 10}, "attempt": 1}
    assert first.actions == [ScheduleActivity(0, "charge", {"total": 10}, 1)]
    assert first.status is Status.RUNNING and first.output is None

    second = d.run(done(0, {"charged": 10}))
    assert first.actions != second.actions
    assert second.actions == [ScheduleActivity(1, "ship", {"charged": 10}, 1)]
    assert [(e.seq, e.kind, e.task_id) for e in second.new_events] == [
        (2, h.TASK_COMPLETED, 0), (3, h.TASK_SCHEDULED, 1)]

    third = d.run(done(1, "yes"))
    assert third.status is Status.COMPLETED
    assert third.output == {"receipt": {"charged": 10}, "shipped": "yes"}
    assert third.actions == []
    assert [(e.seq, e.kind) for e in third.new_events] == [
        (4, h.TASK_COMPLETED), (5, h.EXECUTION_COMPLETED)]
    assert third.new_events[-1].data == {
        "status": "COMPLETED", "output": {"receipt": {"charged": 10}, "shipped": "yes"},
        "failure": None}
    d.check_prefixes()


def test_exception_escaping_the_orchestrator_fails_the_instance_with_failure_details() -> None:
    def broken_orchestrator(ctx: OrchestrationContext, _: Any) -> Any:
        value = yield ctx.call_activity("a")
        raise KeyError(f"missing {value}")

    d = Driver(broken_orchestrator)
    d.run(started())
    result = d.run(done(0, "sku-1"))
    assert result.status is Status.FAILED
    assert result.output is None
    assert result.failure is not None
    assert result.failure.error_type == "KeyError"
    assert result.failure.message == "'missing sku-1'"
    assert result.failure.stack_trace is not None
    assert "broken_orchestrator" in result.failure.stack_trace
    assert "KeyError" in result.failure.stack_trace
    end = result.new_events[-1]
    assert end.kind == h.EXECUTION_COMPLETED and end.data["status"] == "FAILED"
    assert end.data["failure"]["error_type"] == "KeyError"
    d.check_prefixes()


def test_exception_before_the_first_yield_fails_the_instance() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        raise RuntimeError("no good")
        yield ctx.call_activity("never")

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.message == "no good"
    assert result.failure.error_type == "RuntimeError"
    assert kinds(result.new_events) == [h.EXECUTION_STARTED, h.EXECUTION_COMPLETED]
    assert result.actions == []


def test_plain_function_orchestrator_completes_in_its_first_episode() -> None:
    def plain(ctx: OrchestrationContext, n: int) -> int:
        return n * 2

    d = Driver(plain)
    result = d.run(started(21))
    assert result.status is Status.COMPLETED and result.output == 42
    assert kinds(result.new_events) == [h.EXECUTION_STARTED, h.EXECUTION_COMPLETED]


def test_plain_function_that_raises_fails() -> None:
    def plain(ctx: OrchestrationContext, n: int) -> int:
        return 1 // n

    result = Driver(plain).run(started(0))
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "ZeroDivisionError"


def test_one_argument_orchestrator_receives_only_the_context() -> None:
    seen: list[Any] = []

    def orch(ctx: OrchestrationContext) -> Any:
        seen.append(ctx.instance_id)
        value = yield ctx.call_activity("a")
        return value + 1

    d = Driver(orch, "solo")
    d.run(started("ignored input"))
    result = d.run(done(0, 41))
    assert result.status is Status.COMPLETED and result.output == 42
    assert set(seen) == {"solo"}


@dataclass
class Order:
    sku: str
    quantity: int


def test_dataclass_annotated_input_comes_back_as_that_dataclass() -> None:
    received: list[Any] = []

    def orch(ctx: OrchestrationContext, order: Order) -> Any:
        received.append(order)
        yield ctx.call_activity("reserve", input=order)
        return Order(order.sku, order.quantity * 2)

    d = Driver(orch)
    stored = to_json(Order("sku-9", 3))
    first = d.run(started(stored))
    assert received[-1] == Order("sku-9", 3) and type(received[-1]) is Order
    assert first.actions[0].input == {"__durable_object__": True, "sku": "sku-9", "quantity": 3}
    result = d.run(done(0, None))
    assert result.status is Status.COMPLETED
    assert result.output == {"__durable_object__": True, "sku": "sku-9", "quantity": 6}
    assert all(type(r) is Order and r == Order("sku-9", 3) for r in received)


def test_unannotated_object_input_has_attribute_access() -> None:
    def orch(ctx, order):
        return order.sku

    result = Driver(orch).run(started(to_json(Order("x", 1))))
    assert result.status is Status.COMPLETED and result.output == "x"


def test_yielding_something_that_is_not_a_task_fails_with_a_clear_message() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield "not a task"

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "TypeError"
    assert "'not a task'" in result.failure.message
    assert "ctx.call_activity" in result.failure.message


def test_output_that_json_cannot_hold_fails_the_instance() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        return {1, 2}

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "PayloadError"
    assert "output of orchestrator 'orch'" in result.failure.message


def test_completed_task_yielded_again_continues_immediately() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        task = ctx.call_activity("a")
        first = yield task
        second = yield task
        return [first, second, task.get_result(), task.is_complete, task.is_failed]

    d = Driver(orch)
    d.run(started())
    result = d.run(done(0, "v"))
    assert result.output == ["v", "v", "v", True, False]


def test_started_event_timestamp_is_the_episode_now_and_instance_waits_before_start() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")

    d = Driver(orch)
    nothing = d.run(at=T0)
    assert nothing.status is Status.PENDING and nothing.new_events == []
    result = d.run(started(at=T0.replace(year=2000)), at=T0)
    assert result.new_events[0].timestamp == T0
    assert result.status is Status.RUNNING
