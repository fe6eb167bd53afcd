"""ctx.call_task in the in-process test environment: Celery tasks run eagerly (Task.apply),
their own retries included, and their result or final failure is recorded like an activity's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery, shared_task

from celery_durable import Durable, OrchestrationStatus, RetryPolicy, TaskFailedError
from celery_durable.testing import DurableTestEnv

Status = OrchestrationStatus

app = Celery("harness_call_task", broker="memory://", set_as_current=False)
durable = Durable(app, store_url="sqlite://")
attempts: list[int] = []


@app.task(name="billing.add")
def add(x: int, y: int, *, times: int = 1) -> int:
    return (x + y) * times


@app.task(bind=True, name="billing.flaky", autoretry_for=(ConnectionError,), max_retries=3,
          default_retry_delay=60)
def flaky(self: object, fail_times: int) -> str:
    attempts.append(1)
    if len(attempts) <= fail_times:
        raise ConnectionError(f"busy ({len(attempts)})")
    return f"ok after {len(attempts)}"


@app.task(name="billing.when")
def when() -> datetime:
    return datetime(2024, 1, 1, tzinfo=timezone.utc)


@shared_task(name="shared.double")
def double(x: int) -> int:
    return 2 * x


#: task objects the plans below name (a plan is JSON: other names are passed as names)
TASKS = {"add": add, "flaky": flaky, "when": when}


@durable.orchestrator(name="harness.calls")
def calls(ctx, plan):  # type: ignore[no-untyped-def]
    results = []
    for name, args, kwargs in plan:
        task = TASKS.get(name, name)  # by task object, or by name
        try:
            results.append((yield ctx.call_task(task, args=args, kwargs=kwargs)))
        except TaskFailedError as exc:
            results.append([exc.details.error_type, exc.details.message])
    return results


@durable.orchestrator(name="harness.call_with_policy")
def call_with_policy(ctx, fail_times):  # type: ignore[no-untyped-def]
    policy = RetryPolicy(first_retry_interval=timedelta(minutes=5), max_number_of_attempts=2)
    return (yield ctx.call_task(flaky, args=[fail_times], retry_policy=policy))


@pytest.fixture
def env() -> Iterator[DurableTestEnv]:
    attempts.clear()
    with DurableTestEnv(app=durable) as test_env:
        yield test_env


def _run(env: DurableTestEnv, plan: list[list[object]]) -> object:
    state = env.wait_for_orchestration_completion(
        env.schedule_new_orchestration(calls, input=plan))
    assert state.runtime_status is Status.COMPLETED, state.failure_details
    return state


def test_a_task_of_the_app_and_a_shared_task_run_eagerly(env: DurableTestEnv) -> None:
    state = _run(env, [["add", [1, 2], {"times": 3}], ["shared.double", [4], {}]])
    assert state.output == [9, 8]  # type: ignore[attr-defined]
    history = env.get_orchestration_history(state.instance_id)  # type: ignore[attr-defined]
    assert [(e.kind, e.name) for e in history if e.kind.startswith("Task")] == [
        ("TaskScheduled", "billing.add"), ("TaskCompleted", None),
        ("TaskScheduled", "shared.double"), ("TaskCompleted", None)]


def test_celery_retries_run_before_the_outcome_is_recorded_once(env: DurableTestEnv) -> None:
    state = _run(env, [["flaky", [2], {}]])
    assert state.output == ["ok after 3"]  # type: ignore[attr-defined]
    attempts.clear()
    state = _run(env, [["flaky", [9], {}]])
    assert state.output == [["ConnectionError", "busy (4)"]]  # type: ignore[attr-defined]
    history = env.get_orchestration_history(state.instance_id)  # type: ignore[attr-defined]
    assert [e.kind for e in history].count("TaskFailed") == 1


def test_a_result_json_cannot_hold_fails_the_task(env: DurableTestEnv) -> None:
    state = _run(env, [["when", [], {}]])
    [[error_type, message]] = state.output  # type: ignore[attr-defined]
    assert error_type == "PayloadError"
    assert "the result of Celery task 'billing.when' is not JSON-serialisable" in message
    assert "value.isoformat() instead of a datetime" in message


def test_an_unknown_task_name_is_a_clear_error(env: DurableTestEnv) -> None:
    with pytest.raises(Exception, match=r"ctx.call_task\('other.team.task'\): no Celery task "
                                        "of that name is registered in the test environment"):
        env.schedule_new_orchestration(calls, input=[["other.team.task", [], {}]])


def test_a_retry_policy_sends_a_new_attempt_after_a_durable_timer(env: DurableTestEnv) -> None:
    """Attempt 1 fails after Celery's own 3 retries (4 runs); a durable timer later, attempt 2
    succeeds at its first run."""
    iid = env.schedule_new_orchestration(call_with_policy, input=4)
    state = env.wait_for_orchestration_completion(iid)
    assert state.runtime_status is Status.COMPLETED, state.failure_details
    assert state.output == "ok after 5"
    history = env.get_orchestration_history(iid)
    assert [(e.kind, e.name, (e.data or {}).get("attempt")) for e in history
            if e.kind in ("TaskScheduled", "TimerCreated")] == [
        ("TaskScheduled", "billing.flaky", 1), ("TimerCreated", "retry", None),
        ("TaskScheduled", "billing.flaky", 2)]
