"""RetryPolicy: durable retry timers, attempts, backoff, caps, timeouts, validation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from replay_driver import (
    SEC,
    T0,
    Driver,
    Status,
    done,
    failed,
    fired,
    started,
    sub_done,
    sub_failed,
    terminate,
)

from celery_durable.engine import (
    CreateTimer,
    OrchestrationContext,
    RetryPolicy,
    ScheduleActivity,
    ScheduleSubOrchestration,
)
from celery_durable.engine import history as h
from celery_durable.errors import TaskFailedError


def _retrying(policy: RetryPolicy, name: str = "flaky") -> Any:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        try:
            result = yield ctx.call_activity(name, input="x", retry_policy=policy)
        except TaskFailedError as exc:
            return {"gave up": exc.details.message, "type": exc.details.error_type}
        return {"result": result}

    return orch


def _fail_and_retry(d: Driver, task_id: int, at: datetime) -> CreateTimer:
    """Fail attempt ``task_id`` at ``at``; return the retry timer it creates."""
    result = d.run(failed(task_id, f"attempt {task_id} failed"), at=at)
    assert result.status is Status.RUNNING
    assert len(result.actions) == 1 and isinstance(result.actions[0], CreateTimer)
    created = result.new_events[-1]
    assert (created.kind, created.name, created.task_id) == (
        h.TIMER_CREATED, "retry", result.actions[0].task_id)
    assert created.data == {"fire_at": result.actions[0].fire_at.isoformat()}
    return result.actions[0]


def test_backoff_doubles_up_to_the_max_interval_then_gives_up() -> None:
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=10), max_number_of_attempts=5,
                         backoff_coefficient=2.0, max_retry_interval=timedelta(seconds=30))
    d = Driver(_retrying(policy))
    first = d.run(started(), at=T0)
    assert first.actions == [ScheduleActivity(0, "flaky", "x", 1)]
    now = T0
    attempt_id = 0
    delays = []
    for attempt in range(1, 5):
        now += timedelta(seconds=7)  # each attempt takes 7 s to fail
        timer = _fail_and_retry(d, attempt_id, now)
        assert timer.task_id == attempt_id + 1
        delays.append(timer.fire_at - now)
        result = d.run(fired(timer.task_id, timer.fire_at), at=timer.fire_at)
        attempt_id = timer.task_id + 1
        assert result.actions == [ScheduleActivity(attempt_id, "flaky", "x", attempt + 1)]
        assert result.new_events[-1].data == {"input": "x", "attempt": attempt + 1}
        now = timer.fire_at
    assert delays == [timedelta(seconds=s) for s in (10, 20, 30, 30)]
    # the fifth attempt fails: max_number_of_attempts reached
    result = d.run(failed(attempt_id, "still broken", "IOError"), at=now + SEC)
    assert result.status is Status.COMPLETED and result.actions == []
    assert result.output == {"gave up": "still broken", "type": "IOError"}
    d.check_prefixes()


def test_success_after_a_retry_returns_the_result() -> None:
    policy = RetryPolicy(first_retry_interval=timedelta(minutes=1), max_number_of_attempts=3)
    d = Driver(_retrying(policy))
    d.run(started(), at=T0)
    timer = _fail_and_retry(d, 0, T0 + SEC)
    assert timer == CreateTimer(1, T0 + SEC + timedelta(minutes=1))
    d.run(fired(1, timer.fire_at), at=timer.fire_at)
    result = d.run(done(2, "finally"))
    assert result.status is Status.COMPLETED and result.output == {"result": "finally"}
    d.check_prefixes()


def test_retry_timeout_stops_retries_whose_timer_would_fire_too_late() -> None:
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=10), max_number_of_attempts=10,
                         backoff_coefficient=2.0, retry_timeout=timedelta(seconds=60))
    d = Driver(_retrying(policy))
    d.run(started(), at=T0)
    t1 = _fail_and_retry(d, 0, T0 + SEC)  # fires at 11 s
    assert t1.fire_at == T0 + timedelta(seconds=11)
    d.run(fired(1, t1.fire_at), at=t1.fire_at)
    t2 = _fail_and_retry(d, 2, T0 + timedelta(seconds=12))  # 12 + 20 = 32 s <= 60 s
    assert t2.fire_at == T0 + timedelta(seconds=32)
    d.run(fired(3, t2.fire_at), at=t2.fire_at)
    # the next wait would be 40 s: 33 + 40 = 73 s > 60 s after the first attempt: give up
    result = d.run(failed(4, "third failure"), at=T0 + timedelta(seconds=33))
    assert result.status is Status.COMPLETED and result.actions == []
    assert result.output == {"gave up": "third failure", "type": "ValueError"}


def test_uncaught_failure_after_the_last_attempt_fails_the_instance() -> None:
    policy = RetryPolicy(first_retry_interval=SEC, max_number_of_attempts=2)

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("flaky", retry_policy=policy)

    d = Driver(orch)
    d.run(started(), at=T0)
    timer = _fail_and_retry(d, 0, T0)
    d.run(fired(timer.task_id, timer.fire_at), at=timer.fire_at)
    result = d.run(failed(2, "last", "OSError"))
    assert result.status is Status.FAILED
    assert result.failure is not None and result.failure.error_type == "TaskFailedError"
    assert "activity 'flaky' failed: OSError: last" in result.failure.message


def test_one_attempt_means_no_retry() -> None:
    policy = RetryPolicy(first_retry_interval=SEC, max_number_of_attempts=1)
    d = Driver(_retrying(policy))
    d.run(started())
    result = d.run(failed(0, "once"))
    assert result.output == {"gave up": "once", "type": "ValueError"}
    assert result.actions == []


def test_sub_orchestrations_are_retried_with_a_new_child_each_attempt() -> None:
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=5), max_number_of_attempts=3,
                         backoff_coefficient=3.0)

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        a = yield ctx.call_sub_orchestrator("child", input=1, retry_policy=policy)
        b = yield ctx.call_sub_orchestrator("named", instance_id="fixed", retry_policy=policy)
        return [a, b]

    d = Driver(orch, "p", default_version="4")
    assert d.run(started(), at=T0).actions == [
        ScheduleSubOrchestration(0, "child", "p:0", 1, "4")]
    result = d.run(sub_failed(0), at=T0 + SEC)
    assert result.actions == [CreateTimer(1, T0 + timedelta(seconds=6))]
    assert result.new_events[-1].name == "retry"
    result = d.run(fired(1, T0 + timedelta(seconds=6)), at=T0 + timedelta(seconds=6))
    assert result.actions == [ScheduleSubOrchestration(2, "child", "p:2", 1, "4")]
    result = d.run(sub_failed(2), at=T0 + timedelta(seconds=7))
    assert result.actions == [CreateTimer(3, T0 + timedelta(seconds=22))]  # 7 + 5 * 3
    d.run(fired(3, T0 + timedelta(seconds=22)), at=T0 + timedelta(seconds=22))
    result = d.run(sub_done(4, "A"))
    assert result.actions == [ScheduleSubOrchestration(5, "named", "fixed", None, "4")]
    timer = d.run(sub_failed(5), at=T0 + timedelta(seconds=30)).actions[0]
    assert timer == CreateTimer(6, T0 + timedelta(seconds=35))
    result = d.run(fired(6, timer.fire_at), at=timer.fire_at)
    assert result.actions == [ScheduleSubOrchestration(7, "named", "fixed", None, "4")]
    result = d.run(sub_done(7, "B"))
    assert result.status is Status.COMPLETED and result.output == ["A", "B"]
    d.check_prefixes()


def test_terminating_during_a_retry_wait_terminates_no_child() -> None:
    policy = RetryPolicy(first_retry_interval=SEC, max_number_of_attempts=3)

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_sub_orchestrator("child", retry_policy=policy)

    d = Driver(orch, "p")
    d.run(started())
    d.run(sub_failed(0))
    result = d.run(terminate("stop"))
    assert result.status is Status.TERMINATED and result.actions == []


def test_retry_timer_completions_are_deduplicated() -> None:
    policy = RetryPolicy(first_retry_interval=SEC, max_number_of_attempts=3)
    d = Driver(_retrying(policy))
    d.run(started(), at=T0)
    timer = _fail_and_retry(d, 0, T0)
    d.run(fired(1, timer.fire_at))
    again = d.run(fired(1, timer.fire_at), failed(0))
    assert again.new_events == [] and again.actions == []
    assert [reason for _, reason in again.discarded] == [
        "duplicate: task 1 has already completed", "duplicate: task 0 has already completed"]


def test_a_long_capped_backoff_does_not_overflow() -> None:
    """Regression: the uncapped delay was built as a timedelta before the cap was applied, so a
    policy with many attempts raised OverflowError out of the executor after ~47 failures."""
    policy = RetryPolicy(first_retry_interval=SEC, max_number_of_attempts=60,
                         backoff_coefficient=2.0, max_retry_interval=timedelta(hours=1))
    assert policy.delay_after(59) == timedelta(hours=1)
    assert policy.next_fire_at(59, T0, T0) == T0 + timedelta(hours=1)
    d = Driver(_retrying(policy))
    d.run(started(), at=T0)
    now, attempt_id = T0, 0
    for _ in range(59):
        now += SEC
        result = d.live.run([failed(attempt_id)], now)
        timer = result.actions[0]
        assert isinstance(timer, CreateTimer)
        assert timer.fire_at - now <= timedelta(hours=1)
        now = timer.fire_at
        attempt_id = d.live.run([fired(timer.task_id, now)], now).actions[0].task_id
    result = d.live.run([failed(attempt_id, "done trying")], now + SEC)
    assert result.output == {"gave up": "done trying", "type": "ValueError"}


def test_an_unrepresentable_uncapped_delay_gives_up_instead_of_crashing() -> None:
    policy = RetryPolicy(first_retry_interval=timedelta(days=1), max_number_of_attempts=100,
                         backoff_coefficient=10.0)
    assert policy.next_fire_at(3, T0, T0) == T0 + timedelta(days=100)
    assert policy.next_fire_at(20, T0, T0) is None
    assert policy.next_fire_at(400, T0, T0) is None


def test_delay_formula() -> None:
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=2), max_number_of_attempts=9,
                         backoff_coefficient=1.5)
    assert [policy.delay_after(n).total_seconds() for n in (1, 2, 3, 4)] == [2.0, 3.0, 4.5, 6.75]
    assert policy.next_fire_at(9, T0, T0) is None
    assert policy.next_fire_at(8, T0, T0) == T0 + policy.delay_after(8)


@pytest.mark.parametrize("kwargs, message", [
    ({"first_retry_interval": timedelta(0)}, "first_retry_interval must be a positive timedelta"),
    ({"first_retry_interval": timedelta(seconds=-1)}, "first_retry_interval must be a positive"),
    ({"first_retry_interval": 5}, "first_retry_interval must be a positive timedelta"),
    ({"max_number_of_attempts": 0}, "max_number_of_attempts must be an int >= 1"),
    ({"max_number_of_attempts": True}, "max_number_of_attempts must be an int >= 1"),
    ({"max_number_of_attempts": 2.5}, "max_number_of_attempts must be an int >= 1"),
    ({"backoff_coefficient": 0.5}, "backoff_coefficient must be >= 1.0"),
    ({"backoff_coefficient": float("nan")}, "backoff_coefficient must be >= 1.0"),
    ({"max_retry_interval": timedelta(milliseconds=500)},
     "max_retry_interval must not be shorter than first_retry_interval"),
    ({"retry_timeout": timedelta(0)}, "retry_timeout must be a positive timedelta"),
])
def test_invalid_policies_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"first_retry_interval": SEC, "max_number_of_attempts": 3}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**arguments)


def test_retry_policy_must_be_a_retry_policy() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a", retry_policy={"max_number_of_attempts": 3})

    result = Driver(orch).run(started())
    assert result.status is Status.FAILED
    assert result.failure is not None and "retry_policy must be a RetryPolicy" in \
        result.failure.message
