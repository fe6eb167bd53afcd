"""Orchestrators and activities the test-environment tests run (module-level: every Durable,
and so every ``durable_env``, has them). Names start with ``harness.`` to stay unique."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from celery_durable import RetryPolicy, TaskFailedError, activity, orchestrator, when_any

#: what the real activities did, in order (the tests check that mocks kept them from running)
CALLS: list[str] = []


@dataclass
class Parcel:
    weight: int


@activity(name="harness.charge")
def charge(ctx, amount):
    CALLS.append(f"charge {amount}")
    return {"charged": amount, "attempt": ctx.attempt}


@activity(name="harness.refund")
def refund(ctx, amount):
    CALLS.append(f"refund {amount}")
    return {"refunded": amount}


@activity(name="harness.weigh")
def weigh(ctx, parcel: Parcel):
    return {"type": type(parcel).__name__, "weight": parcel.weight}


@orchestrator(name="harness.pay")
def pay(ctx, amount):
    """Charge with retries; refund when charging fails for good."""
    try:
        receipt = yield ctx.call_activity(charge, input=amount, retry_policy=RetryPolicy(
            first_retry_interval=timedelta(minutes=5), max_number_of_attempts=3,
            backoff_coefficient=2.0))
    except TaskFailedError as exc:
        yield ctx.call_activity(refund, input=amount)
        return {"status": "refunded", "error": exc.details.error_type}
    return {"status": "paid", "receipt": receipt}


@orchestrator(name="harness.month")
def month(ctx, _):
    started = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(days=30))
    return (ctx.current_utc_datetime - started).total_seconds()


@orchestrator(name="harness.ticks")
def ticks(ctx, n):
    """Records the (test clock) time of each of ``n`` hourly timers."""
    seen = []
    for _ in range(n):
        yield ctx.create_timer(timedelta(hours=1))
        seen.append(ctx.current_utc_datetime.isoformat())
    return seen


@orchestrator(name="harness.approval")
def approval(ctx, hours):
    """An approval event raced against a timeout of ``hours``."""
    event = ctx.wait_for_external_event("approve")
    timeout = ctx.create_timer(timedelta(hours=hours))
    winner = yield when_any([event, timeout])
    return "timed out" if winner == timeout else f"approved by {event.get_result()}"


@orchestrator(name="harness.wait_event")
def wait_event(ctx, _):
    return (yield ctx.wait_for_external_event("go"))


@orchestrator(name="harness.parent")
def parent(ctx, amounts):
    results = []
    for amount in amounts:
        results.append((yield ctx.call_sub_orchestrator(pay, input=amount)))
    return results


@orchestrator(name="harness.countdown")
def countdown(ctx, n):
    """Continue-as-new every day until ``n`` reaches 0."""
    if n == 0:
        return "done"
    yield ctx.create_timer(timedelta(days=1))
    ctx.continue_as_new(n - 1)


@orchestrator(name="harness.forever")
def forever(ctx, n):
    yield ctx.create_timer(timedelta(minutes=1))
    ctx.continue_as_new(n + 1)


@orchestrator(name="harness.ship")
def ship(ctx, weight):
    return (yield ctx.call_activity(weigh, input=Parcel(weight)))


@orchestrator(name="harness.remote")
def remote(ctx, sku):
    """Calls an activity that only another service registers."""
    return (yield ctx.call_activity("warehouse.reserve", input=sku))
