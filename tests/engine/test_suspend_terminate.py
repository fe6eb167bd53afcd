"""Suspend, resume and terminate."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from replay_driver import (
    Driver,
    Status,
    done,
    fired,
    kinds,
    raised,
    resume,
    started,
    sub_done,
    suspend,
    terminate,
)

from celery_durable.engine import (
    CreateTimer,
    OrchestrationContext,
    ScheduleActivity,
    TerminateOrchestration,
)
from celery_durable.engine import history as h


def _three_steps(ctx: OrchestrationContext, _: Any) -> Any:
    a = yield ctx.call_activity("a")
    e = yield ctx.wait_for_external_event("go")
    b = yield ctx.call_activity("b", input=[a, e])
    return b


def test_suspended_instance_appends_events_but_delivers_them_on_resume_in_order() -> None:
    d = Driver(_three_steps)
    d.run(started())
    result = d.run(suspend("maintenance"))
    assert result.status is Status.SUSPENDED
    assert [(e.kind, e.data) for e in result.new_events] == [
        (h.EXECUTION_SUSPENDED, {"reason": "maintenance"})]
    result = d.run(done(0, "A"), raised("go", "E"))
    assert result.status is Status.SUSPENDED
    assert kinds(result.new_events) == [h.TASK_COMPLETED, h.EVENT_RAISED]  # appended...
    assert result.actions == []  # ...but not delivered
    result = d.run(resume("done"))
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleActivity(1, "b", ["A", "E"], 1)]
    assert [(e.seq, e.kind) for e in result.new_events] == [
        (5, h.EXECUTION_RESUMED), (6, h.TASK_SCHEDULED)]
    assert d.run(done(1, "B")).output == "B"
    d.check_prefixes()


def test_events_buffered_while_suspended_are_delivered_in_arrival_order() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        first = yield ctx.wait_for_external_event("x")
        second = yield ctx.wait_for_external_event("x")
        third = yield ctx.call_activity("a", input=[first, second])
        return third

    d = Driver(orch)
    d.run(started(), suspend())
    d.run(raised("x", 1))
    d.run(raised("X", 2), raised("x", 3))
    result = d.run(resume())
    assert result.actions == [ScheduleActivity(0, "a", [1, 2], 1)]
    d.check_prefixes()


def test_suspend_before_start_buffers_the_start() -> None:
    d = Driver(_three_steps)
    assert d.run(suspend()).status is Status.SUSPENDED
    result = d.run(started(), raised("go", 1))
    assert result.status is Status.SUSPENDED and result.actions == []
    assert kinds(result.new_events) == [h.EXECUTION_STARTED, h.EVENT_RAISED]
    result = d.run(resume())
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleActivity(0, "a", None, 1)]
    result = d.run(done(0, "A"))
    assert result.actions == [ScheduleActivity(1, "b", ["A", 1], 1)]
    d.check_prefixes()


def test_resume_of_a_never_started_instance_goes_back_to_pending() -> None:
    d = Driver(_three_steps)
    d.run(suspend())
    result = d.run(resume())
    assert result.status is Status.PENDING and result.actions == []
    assert d.run(started()).status is Status.RUNNING


def test_double_suspend_and_resume_without_suspend_are_discarded() -> None:
    d = Driver(_three_steps)
    d.run(started())
    result = d.run(resume())
    assert result.new_events == []
    assert [reason for _, reason in result.discarded] == ["the instance is not suspended"]
    d.run(suspend())
    result = d.run(suspend())
    assert result.new_events == [] and result.status is Status.SUSPENDED
    assert [reason for _, reason in result.discarded] == ["the instance is already suspended"]


def test_suspend_and_resume_in_the_same_batch() -> None:
    d = Driver(_three_steps)
    d.run(started())
    result = d.run(suspend(), done(0, "A"), resume(), raised("go", "E"))
    assert result.status is Status.RUNNING
    assert result.actions == [ScheduleActivity(1, "b", ["A", "E"], 1)]
    assert kinds(result.new_events) == [
        h.EXECUTION_SUSPENDED, h.TASK_COMPLETED, h.EXECUTION_RESUMED, h.EVENT_RAISED,
        h.TASK_SCHEDULED]
    d.check_prefixes()


def test_timer_fired_while_suspended_is_delivered_on_resume() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.create_timer(timedelta(minutes=1))
        return "woke"

    d = Driver(orch)
    first = d.run(started())
    timer = first.actions[0]
    assert isinstance(timer, CreateTimer)
    d.run(suspend())
    assert d.run(fired(0, timer.fire_at)).status is Status.SUSPENDED
    assert d.run(resume()).output == "woke"


def test_terminate_ends_the_instance_with_the_given_output() -> None:
    d = Driver(_three_steps)
    d.run(started())
    result = d.run(terminate({"why": "operator"}, recursive=False))
    assert result.status is Status.TERMINATED
    assert result.output == {"why": "operator"} and result.failure is None
    assert result.actions == []
    assert [(e.kind, e.data) for e in result.new_events] == [
        (h.EXECUTION_TERMINATED, {"output": {"why": "operator"}, "recursive": False}),
        (h.EXECUTION_COMPLETED,
         {"status": "TERMINATED", "output": {"why": "operator"}, "failure": None})]
    late = d.run(done(0, "A"))
    assert late.new_events == [] and late.status is Status.TERMINATED
    assert "already ended (TERMINATED)" in late.discarded[0][1]
    d.check_prefixes()


def test_terminate_while_suspended_and_before_start() -> None:
    d = Driver(_three_steps)
    d.run(started())
    d.run(suspend())
    assert d.run(terminate("stop")).status is Status.TERMINATED
    d2 = Driver(_three_steps)
    result = d2.run(terminate("never ran"))
    assert result.status is Status.TERMINATED and result.output == "never ran"
    result = d2.run(started())
    assert result.new_events == [] and result.actions == []


def _parent(ctx: OrchestrationContext, _: Any) -> Any:
    first = ctx.call_sub_orchestrator("child", input=1)
    second = ctx.call_sub_orchestrator("child", input=2, instance_id="named-child")
    third = ctx.call_sub_orchestrator("child", input=3)
    return (yield ctx.when_all([first, second, third]))


def test_recursive_terminate_terminates_running_children_only() -> None:
    d = Driver(_parent, "p")
    d.run(started())
    d.run(sub_done(0, "one"))
    result = d.run(terminate("stop"))
    assert result.status is Status.TERMINATED
    assert result.actions == [TerminateOrchestration("named-child", "stop", True),
                              TerminateOrchestration("p:2", "stop", True)]
    d.check_prefixes()


def test_non_recursive_terminate_leaves_children_alone() -> None:
    d = Driver(_parent, "p")
    d.run(started())
    result = d.run(terminate("stop", recursive=False))
    assert result.status is Status.TERMINATED and result.actions == []


def test_recursive_terminate_skips_children_whose_completion_is_buffered() -> None:
    """Regression: a child whose completion arrived while the parent was suspended was still
    terminated, although its SubOrchestrationCompleted is in the parent's history."""
    d = Driver(_parent, "p")
    d.run(started())
    d.run(suspend(), sub_done(0, "one"))
    result = d.run(terminate("stop"))
    assert result.actions == [TerminateOrchestration("named-child", "stop", True),
                              TerminateOrchestration("p:2", "stop", True)]


# unfinished generators that yield in finally make Python warn when they are collected
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_terminating_an_orchestrator_that_yields_in_finally_does_not_crash() -> None:
    """Regression: closing the generator ran its finally block, whose yield made close() raise
    RuntimeError out of the executor; the instance could not be terminated."""

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.call_activity("work")
        finally:
            yield ctx.call_activity("release")

    d = Driver(orch)
    d.run(started())
    result = d.run(terminate("stop"))
    assert result.status is Status.TERMINATED and result.output == "stop"
    assert result.actions == []
    assert kinds(result.new_events) == [h.EXECUTION_TERMINATED, h.EXECUTION_COMPLETED]
    d.check_prefixes()


def test_work_scheduled_by_finally_blocks_after_the_end_is_not_scheduled() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.create_timer(timedelta(hours=1))
        finally:
            ctx.call_activity("cleanup")

    d = Driver(orch)
    d.run(started())
    result = d.run(terminate("stop"))
    assert result.status is Status.TERMINATED
    assert result.actions == []
    assert kinds(result.new_events) == [h.EXECUTION_TERMINATED, h.EXECUTION_COMPLETED]


def test_the_recommended_approval_loop_reuses_one_wait() -> None:
    """A when_any loser stays registered (as in durabletask): a wait abandoned in one round would
    take the next event of that name. Creating the wait once and reusing it works."""

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        approval = ctx.wait_for_external_event("approval")
        for round_ in range(3):
            reminder = ctx.create_timer(timedelta(hours=1))
            winner = yield ctx.when_any([approval, reminder])
            if winner == approval:
                return f"approved by {approval.get_result()} in round {round_}"
            yield ctx.call_activity("remind", input=round_)
        return "gave up"

    d = Driver(orch)
    d.run(started())
    d.run(fired(0))
    d.run(done(1))
    result = d.run(raised("Approval", "ann"))
    assert result.output == "approved by ann in round 1"
    d.check_prefixes()
