"""``durable_env.mock_activity``: stubs and failures for one test, through the real activity task."""

from __future__ import annotations

from datetime import timedelta

import harness_workflows as wf
import pytest

from celery_durable import OrchestrationStatus
from celery_durable.testing import DurableTestEnv


@pytest.fixture(autouse=True)
def _no_real_calls_yet() -> None:
    wf.CALLS.clear()


def test_returns_replaces_the_activity(durable_env: DurableTestEnv) -> None:
    mock = durable_env.mock_activity(wf.charge, returns={"charged": 0})
    iid = durable_env.schedule_new_orchestration(wf.pay, input=10)
    assert durable_env.get_orchestration_state(iid).output == {"status": "paid",
                                                               "receipt": {"charged": 0}}
    assert wf.CALLS == []  # the real activity never ran
    assert mock.call_count == 1 and mock.calls[0].input == 10
    assert mock.calls[0].ctx.orchestration_id == iid and mock.calls[0].attempt == 1


def test_fail_n_times_then_the_real_activity_runs(durable_env: DurableTestEnv) -> None:
    mock = durable_env.mock_activity("harness.charge", raises=ConnectionError("down"), times=2)
    start = durable_env.now
    iid = durable_env.schedule_new_orchestration(wf.pay, input=10)
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output == {"status": "paid", "receipt": {"charged": 10, "attempt": 3}}
    assert [c.attempt for c in mock.calls] == [1, 2, 3] and wf.CALLS == ["charge 10"]
    # retry waits are durable timers of 5 and 10 minutes (backoff 2): skipped, not slept
    assert durable_env.now == start + timedelta(minutes=15)
    failures = [e for e in durable_env.get_orchestration_history(iid) if e.kind == "TaskFailed"]
    assert [f.data["error_type"] for f in failures] == ["ConnectionError"] * 2
    assert failures[0].data["message"] == "down"


def test_compensation_path_when_retries_run_out(durable_env: DurableTestEnv) -> None:
    durable_env.mock_activity(wf.charge, raises=TimeoutError)
    refund = durable_env.mock_activity(wf.refund, side_effect=lambda ctx, amount: -amount)
    iid = durable_env.schedule_new_orchestration(wf.pay, input=10)
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output == {"status": "refunded", "error": "TimeoutError"}
    assert [c.input for c in refund.calls] == [10] and wf.CALLS == []


def test_a_mock_keeps_the_input_type_of_the_real_activity(durable_env: DurableTestEnv) -> None:
    mock = durable_env.mock_activity(wf.weigh, returns="ok", times=1)
    first = durable_env.schedule_new_orchestration(wf.ship, input=3)
    second = durable_env.schedule_new_orchestration(wf.ship, input=4)
    assert durable_env.get_orchestration_state(first).output == "ok"
    assert type(mock.calls[0].input) is wf.Parcel
    assert durable_env.get_orchestration_state(second).output == {"type": "Parcel", "weight": 4}


def test_an_activity_this_process_does_not_register(durable_env: DurableTestEnv) -> None:
    iid = durable_env.schedule_new_orchestration(wf.remote, input="sku-1")
    state = durable_env.get_orchestration_state(iid)
    assert state.runtime_status is OrchestrationStatus.FAILED  # the real outcome: unknown name
    assert "warehouse.reserve" in state.failure_details.message
    durable_env.mock_activity("warehouse.reserve", returns="reserved", times=1)
    durable_env.mock_activity("warehouse.reserve", side_effect=lambda ctx, sku: f"got {sku}")
    iid = durable_env.schedule_new_orchestration(wf.remote, input="sku-2")
    assert durable_env.get_orchestration_state(iid).output == "got sku-2"


def test_an_exhausted_mock_without_a_real_activity_fails_the_task(
        durable_env: DurableTestEnv) -> None:
    durable_env.mock_activity("warehouse.reserve", returns="reserved", times=0)
    iid = durable_env.schedule_new_orchestration(wf.remote, input="sku-1")
    details = durable_env.get_orchestration_state(iid).failure_details
    assert details.error_type == "TaskFailedError"
    assert "DurableError: the mock of activity 'warehouse.reserve' answered its 0 call(s)" in \
        details.message


def test_bad_mock_arguments(durable_env: DurableTestEnv) -> None:
    with pytest.raises(ValueError, match="at most one of"):
        durable_env.mock_activity(wf.charge, returns=1, raises=ValueError)
    with pytest.raises(ValueError, match="times must be"):
        durable_env.mock_activity(wf.charge, returns=1, times=-1)
    with pytest.raises(TypeError, match="activity must be"):
        durable_env.mock_activity(42)
