"""`Orchestration.would_resume`: whether a completion could let the code go on. The runtime
leaves a completion the engine is certain about in the inbox for a coalesced episode (one more
result of a fan-out), so a wrong False would only delay the code, but the contract is strict:
whenever it answers False, feeding the event records it and produces nothing else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from replay_driver import T0, done, failed, fired, raised, resume, started, sub_done, suspend

from celery_durable.engine import (
    HistoryEvent,
    Orchestration,
    OrchestrationStatus,
    RetryPolicy,
    when_all,
    when_any,
)


def fan_out(ctx: Any, n: int) -> Any:
    results = yield when_all([ctx.call_activity("noop", input=i) for i in range(n)])
    return len(results)


def first_of(ctx: Any, n: int) -> Any:
    winner = yield when_any([ctx.call_activity("noop", input=i) for i in range(n)])
    return winner.get_result()


def waits_on_one(ctx: Any, _: Any) -> Any:
    ctx.call_activity("background")  # task 0: nobody waits for it
    value = yield ctx.call_activity("foreground")  # task 1
    return value


def nested(ctx: Any, _: Any) -> Any:
    pair = when_all([ctx.call_activity("a"), ctx.call_activity("b")])  # tasks 0, 1
    either = yield when_any([pair, ctx.call_activity("c")])  # task 2
    return either.get_result()


def retried(ctx: Any, n: int) -> Any:
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3)
    results = yield when_all([ctx.call_activity("flaky", input=i, retry_policy=policy)
                              for i in range(n)])
    return results


def with_child(ctx: Any, _: Any) -> Any:
    results = yield when_all([ctx.call_sub_orchestrator("child", input=i) for i in range(2)])
    return results


def checked_run(orchestration: Orchestration, event: HistoryEvent) -> bool:
    """Feed ``event``; when `would_resume` said False, nothing but the event itself came out."""
    answer = orchestration.would_resume(event)
    before = orchestration.status
    result = orchestration.run([event], T0)
    if not answer:
        assert [e.kind for e in result.new_events] == [event.kind], result.new_events
        assert not result.actions and result.status is before
    return answer


def begin(fn: Callable[..., Any], input: Any = None) -> Orchestration:
    orchestration = Orchestration(fn, "i")
    orchestration.run([started(input, name=fn.__name__)], T0)
    return orchestration


def test_a_fan_out_resumes_only_with_its_last_result() -> None:
    orchestration = begin(fan_out, 5)
    answers = [checked_run(orchestration, done(task_id)) for task_id in (3, 0, 4, 1, 2)]
    assert answers == [False, False, False, False, True]
    assert orchestration.status is OrchestrationStatus.COMPLETED


def test_a_failure_always_resumes_it_fails_when_all_or_schedules_a_retry() -> None:
    orchestration = begin(fan_out, 3)
    assert checked_run(orchestration, failed(1)) is True
    assert orchestration.status is OrchestrationStatus.FAILED
    with_retries = begin(retried, 3)
    assert checked_run(with_retries, failed(0)) is True  # its retry timer is an action


def test_when_any_resumes_with_its_first_result() -> None:
    orchestration = begin(first_of, 3)
    assert checked_run(orchestration, done(2, "two")) is True
    assert orchestration.status is OrchestrationStatus.COMPLETED


def test_a_task_nobody_waits_on_does_not_resume() -> None:
    orchestration = begin(waits_on_one)
    assert checked_run(orchestration, done(0)) is False
    assert checked_run(orchestration, done(1, "v")) is True


def test_nested_composites_resume_when_what_the_code_waits_on_completes() -> None:
    orchestration = begin(nested)
    assert checked_run(orchestration, done(0)) is False  # the pair still waits for "b"
    assert checked_run(orchestration, done(1)) is True  # the pair completes the when_any
    other = begin(nested)
    assert checked_run(other, done(2)) is True


def test_sub_orchestration_results_count_like_activity_results() -> None:
    orchestration = begin(with_child)
    assert checked_run(orchestration, sub_done(0)) is False
    assert checked_run(orchestration, sub_done(1)) is True


@pytest.mark.parametrize("event", [fired(0), raised("go")], ids=["timer", "external event"])
def test_other_kinds_of_event_always_count_as_resuming(event: HistoryEvent) -> None:
    assert begin(fan_out, 2).would_resume(event) is True


def test_unknown_duplicate_and_suspended_completions_count_as_resuming() -> None:
    orchestration = begin(fan_out, 3)
    assert orchestration.would_resume(done(7)) is True  # never scheduled: the episode drops it
    checked_run(orchestration, done(0))
    assert orchestration.would_resume(done(0)) is True  # a duplicate: the episode drops it
    checked_run(orchestration, suspend())
    assert orchestration.would_resume(done(1)) is True
    checked_run(orchestration, resume())
    assert orchestration.would_resume(done(1)) is False


def test_an_ended_or_unstarted_orchestration_counts_as_resuming() -> None:
    assert Orchestration(fan_out, "i").would_resume(done(0)) is True
    orchestration = begin(fan_out, 1)
    checked_run(orchestration, done(0))
    assert orchestration.would_resume(done(0)) is True
    assert orchestration.status is OrchestrationStatus.COMPLETED
