"""The order workflow: reserve every item in parallel, wait for approval (or time out), charge
with retries, wait out a short cooling-off timer, then ship."""

from __future__ import annotations

from datetime import timedelta

from celery_durable import RetryPolicy, activity, orchestrator, when_all, when_any


@activity
def reserve_item(ctx, item):
    return {"item": item["sku"], "reserved": item["qty"]}


@activity
def charge(ctx, order):
    if ctx.attempt == 1:  # the payment provider is flaky: the first attempt always fails
        raise ConnectionError("payment provider timed out")
    return {"charged": order["total"], "attempt": ctx.attempt}


@activity
def ship(ctx, order):
    return {"tracking": f"TRACK-{order['id']}"}


@orchestrator
def process_order(ctx, order):
    ctx.set_custom_status("reserving items")
    reservations = yield when_all(
        [ctx.call_activity(reserve_item, input=item) for item in order["items"]])
    ctx.set_custom_status("waiting for approval")
    approval = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(seconds=60))
    winner = yield when_any([approval, timeout])
    if winner == timeout or not approval.get_result():
        return {"order": order["id"], "status": "cancelled"}
    ctx.set_custom_status("charging")
    receipt = yield ctx.call_activity(charge, input=order, retry_policy=RetryPolicy(
        first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=3))
    ctx.set_custom_status("cooling off")
    yield ctx.create_timer(timedelta(seconds=1))
    ctx.set_custom_status("shipping")
    shipment = yield ctx.call_activity(ship, input=order)
    return {"order": order["id"], "status": "shipped", "reservations": reservations,
            "receipt": receipt, "shipment": shipment}
