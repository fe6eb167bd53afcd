"""The in-process test environment (the ``durable_env`` fixture): real engine and store, no
broker or worker, a test clock that skips to the next timer when nothing else can progress."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import harness_workflows as wf
import pytest
from celery import Celery

from celery_durable import (
    Durable,
    DurableClient,
    OrchestrationNotFoundError,
    OrchestrationStateError,
    OrchestrationStatus,
)
from celery_durable.testing import DurableTestEnv

Status = OrchestrationStatus


def test_runs_in_process_with_real_tasks_and_store(durable_env: DurableTestEnv) -> None:
    assert isinstance(durable_env, DurableClient)
    iid = durable_env.schedule_new_orchestration(wf.pay, input=10, instance_id="order-1")
    state = durable_env.get_orchestration_state(iid)
    assert state is not None and state.runtime_status is Status.COMPLETED  # ran eagerly
    assert state.output == {"status": "paid", "receipt": {"charged": 10, "attempt": 1}}
    kinds = [e.kind for e in durable_env.get_orchestration_history(iid)]
    assert kinds == ["ExecutionStarted", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"]
    assert durable_env.durable.store.get_instance(iid) is not None  # the real store has it
    page = durable_env.query_orchestrations(status="COMPLETED", name="harness.pay")
    assert [s.instance_id for s in page.items] == ["order-1"]
    assert durable_env.purge_orchestration(iid) == 1
    assert durable_env.get_orchestration_state(iid) is None


def test_month_long_timer_returns_at_once(durable_env: DurableTestEnv) -> None:
    start = durable_env.now
    iid = durable_env.schedule_new_orchestration(wf.month)
    assert durable_env.get_orchestration_state(iid).runtime_status is Status.RUNNING
    state = durable_env.wait_for_orchestration_completion(iid, timeout=5)
    assert state.output == 30 * 24 * 3600
    assert durable_env.now == start + timedelta(days=30)
    history = durable_env.get_orchestration_history(iid)
    fired = next(e for e in history if e.kind == "TimerFired")
    assert fired.timestamp == start + timedelta(days=30)  # the episode ran at the test clock


def test_advance_fires_timers_in_order_each_at_its_time() -> None:
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with DurableTestEnv(start=start) as env:
        iid = env.schedule_new_orchestration(wf.ticks, input=3)
        env.advance(timedelta(hours=2, minutes=30))
        assert env.now == start + timedelta(hours=2, minutes=30)
        fired = [e.timestamp for e in env.get_orchestration_history(iid) if e.kind == "TimerFired"]
        assert fired == [start + timedelta(hours=1), start + timedelta(hours=2)]
        assert env.get_orchestration_state(iid).runtime_status is Status.RUNNING
        env.advance(timedelta(minutes=30))
        state = env.get_orchestration_state(iid)
        assert state.runtime_status is Status.COMPLETED
        assert state.output == [(start + timedelta(hours=h)).isoformat() for h in (1, 2, 3)]
        with pytest.raises(ValueError, match="non-negative timedelta"):
            env.advance(timedelta(seconds=-1))


def test_when_any_event_before_the_timeout(durable_env: DurableTestEnv) -> None:
    iid = durable_env.schedule_new_orchestration(wf.approval, input=24)
    durable_env.advance(timedelta(hours=23))  # not yet timed out
    durable_env.raise_orchestration_event(iid, "approve", data="ann")
    state = durable_env.get_orchestration_state(iid)
    assert state.runtime_status is Status.COMPLETED and state.output == "approved by ann"


def test_when_any_timeout_when_the_test_waits(durable_env: DurableTestEnv) -> None:
    start = durable_env.now
    iid = durable_env.schedule_new_orchestration(wf.approval, input=24 * 90)
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output == "timed out" and durable_env.now == start + timedelta(days=90)


def test_waiting_for_an_event_nobody_raises_says_so(durable_env: DurableTestEnv) -> None:
    iid = durable_env.schedule_new_orchestration(wf.wait_event)
    with pytest.raises(TimeoutError, match="waits for an external event"):
        durable_env.wait_for_orchestration_completion(iid)
    durable_env.suspend_orchestration(iid)
    with pytest.raises(TimeoutError, match="it is SUSPENDED .* resume it"):
        durable_env.wait_for_orchestration_completion(iid)
    durable_env.raise_orchestration_event(iid, "go", data=1)  # buffered while suspended
    assert durable_env.get_orchestration_state(iid).runtime_status is Status.SUSPENDED
    durable_env.resume_orchestration(iid)
    assert durable_env.wait_for_orchestration_completion(iid).output == 1


def test_a_loop_that_never_ends_times_out_in_real_time(durable_env: DurableTestEnv) -> None:
    iid = durable_env.schedule_new_orchestration(wf.forever, input=0)
    with pytest.raises(TimeoutError, match="within 0.2s of real time"):
        durable_env.wait_for_orchestration_completion(iid, timeout=0.2)
    durable_env.terminate_orchestration(iid, output="stop")
    state = durable_env.get_orchestration_state(iid)
    assert state.runtime_status is Status.TERMINATED and state.output == "stop"


def test_sub_orchestrations_and_retries(durable_env: DurableTestEnv) -> None:
    durable_env.mock_activity(wf.charge, raises=ConnectionError, times=1)
    start = durable_env.now
    iid = durable_env.schedule_new_orchestration(wf.parent, input=[5, 7])
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output == [{"status": "paid", "receipt": {"charged": 5, "attempt": 2}},
                            {"status": "paid", "receipt": {"charged": 7, "attempt": 1}}]
    assert durable_env.now == start + timedelta(minutes=5)  # one retry interval skipped
    child = durable_env.get_orchestration_state(f"{iid}:0")
    assert child.parent_instance_id == iid and child.runtime_status is Status.COMPLETED


def test_continue_as_new(durable_env: DurableTestEnv) -> None:
    start = durable_env.now
    iid = durable_env.schedule_new_orchestration(wf.countdown, input=3)
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output == "done" and state.input == 0
    assert durable_env.now == start + timedelta(days=3)


def test_delayed_start_beyond_the_timer_horizon(durable_env: DurableTestEnv) -> None:
    start_at = durable_env.now + timedelta(days=2)
    iid = durable_env.schedule_new_orchestration(wf.pay, input=1, start_at=start_at)
    assert durable_env.get_orchestration_state(iid).runtime_status is Status.PENDING
    state = durable_env.wait_for_orchestration_start(iid)
    assert state.runtime_status is Status.COMPLETED and durable_env.now == start_at


def test_client_errors_are_the_real_ones(durable_env: DurableTestEnv) -> None:
    with pytest.raises(OrchestrationNotFoundError):
        durable_env.raise_orchestration_event("nope", "go")
    iid = durable_env.schedule_new_orchestration(wf.pay, input=1)
    with pytest.raises(OrchestrationStateError, match="already ended"):
        durable_env.terminate_orchestration(iid)


def test_definitions_of_the_users_app_and_its_versioning() -> None:
    from celery_durable import VersioningOptions

    app = Celery("harness-user-app", set_as_current=False)
    user = Durable(app, store_url="sqlite://", versioning=VersioningOptions(default_version="3"))

    @user.activity(name="harness.user.double")
    def double(ctx, n):
        return 2 * n

    @user.orchestrator(name="harness.user.flow")
    def flow(ctx, n):
        return {"version": ctx.version, "result": (yield ctx.call_activity(double, input=n))}

    with DurableTestEnv(app=app) as env:
        iid = env.schedule_new_orchestration(flow, input=4)
        assert env.get_orchestration_state(iid).output == {"version": "3", "result": 8}
        assert "harness.pay" in env.durable.registry.orchestrators  # module-level ones too
    with pytest.raises(TypeError, match="Celery app with a Durable"):
        DurableTestEnv(app="proj")  # type: ignore[arg-type]


def test_a_store_of_the_users_is_left_clean() -> None:
    from services import database

    with database("postgresql", "durable_harness") as url:
        with DurableTestEnv(url) as env:
            done = env.schedule_new_orchestration(wf.pay, input=1)
            waiting = env.schedule_new_orchestration(wf.wait_event)
            assert env.purge_on_close
        with DurableTestEnv(url) as again:
            assert again.get_orchestration_state(done) is None
            assert again.get_orchestration_state(waiting) is None
