"""The example's own tests: the order workflow in the ``durable_env`` test environment (no
broker, no worker; the 60 s approval timeout and the retry waits are skipped, not slept)."""

from __future__ import annotations

from datetime import timedelta

from celery_durable import OrchestrationStatus
from celery_durable.testing import replay
from example_project.orders import charge, process_order, ship

ORDER = {"id": "A-1", "total": 42.5, "items": [{"sku": "book", "qty": 1}, {"sku": "pen", "qty": 3}]}


def test_an_approved_order_is_charged_and_shipped(durable_env):
    iid = durable_env.schedule_new_orchestration(process_order, input=ORDER)
    assert durable_env.get_orchestration_state(iid).custom_status == "waiting for approval"
    durable_env.raise_orchestration_event(iid, "approval", data=True)
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output["status"] == "shipped"
    assert state.output["reservations"] == [{"item": "book", "reserved": 1},
                                            {"item": "pen", "reserved": 3}]
    # the real charge fails on its first attempt: the retry policy ran it again
    assert state.output["receipt"] == {"charged": 42.5, "attempt": 2}
    assert state.output["shipment"] == {"tracking": "TRACK-A-1"}


def test_an_order_nobody_approves_is_cancelled_after_a_minute(durable_env):
    start = durable_env.now
    iid = durable_env.schedule_new_orchestration(process_order, input=ORDER)
    durable_env.advance(timedelta(seconds=59))
    assert durable_env.get_orchestration_state(iid).runtime_status is OrchestrationStatus.RUNNING
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output == {"order": "A-1", "status": "cancelled"}
    assert durable_env.now == start + timedelta(seconds=60)


def test_a_rejected_order_is_cancelled(durable_env):
    shipping = durable_env.mock_activity(ship, returns={"tracking": "none"})
    iid = durable_env.schedule_new_orchestration(process_order, input=ORDER)
    durable_env.raise_orchestration_event(iid, "approval", data=False)
    assert durable_env.get_orchestration_state(iid).output["status"] == "cancelled"
    assert shipping.call_count == 0


def test_the_order_fails_when_the_payment_provider_stays_down(durable_env):
    payments = durable_env.mock_activity(charge, raises=ConnectionError("provider down"))
    shipping = durable_env.mock_activity(ship, returns={"tracking": "none"})
    iid = durable_env.schedule_new_orchestration(process_order, input=ORDER)
    durable_env.raise_orchestration_event(iid, "approval", data=True)
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.runtime_status is OrchestrationStatus.FAILED
    assert "provider down" in state.failure_details.message
    assert [call.attempt for call in payments.calls] == [1, 2, 3]
    assert shipping.call_count == 0


def test_a_shipped_orders_history_replays_on_this_code(durable_env):
    iid = durable_env.schedule_new_orchestration(process_order, input=ORDER)
    durable_env.raise_orchestration_event(iid, "approval", data=True)
    durable_env.wait_for_orchestration_completion(iid)
    history = durable_env.get_orchestration_history(iid)
    assert replay(history, process_order).events == len(history)
