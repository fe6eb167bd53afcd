"""Orchestrators and activities the end-to-end tests run (registered on every Durable)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

from celery_durable import RetryPolicy, TaskFailedError, activity, orchestrator, when_all, when_any

#: a queue of its own for one activity (the embedded worker consumes it too); unique per test
#: run (worker subprocesses inherit it), so runs sharing a broker never take each other's work
PAYMENTS_QUEUE = os.environ.setdefault("DURABLE_E2E_PAYMENTS_QUEUE",
                                       f"durable-e2e-payments-{uuid.uuid4().hex[:8]}")


@activity(name="e2e.pay", queue=PAYMENTS_QUEUE, rate_limit="100/s", time_limit=30)
def pay(ctx, amount):
    return {"paid": amount, "attempt": ctx.attempt, "instance": ctx.orchestration_id}


@orchestrator(name="e2e.checkout")
def checkout(ctx, amount):
    return (yield ctx.call_activity(pay, input=amount))


@activity(name="e2e.add")
def add(ctx, pair):
    return pair[0] + pair[1]


@activity(name="e2e.echo")
def echo(ctx, value):
    return value


@activity(name="e2e.touch")
def touch(ctx, path):
    """Writes 'plain' when called as a plain Celery task, 'orchestrated' otherwise."""
    with open(path, "w") as f:
        f.write("plain" if ctx.orchestration_id is None else "orchestrated")


@activity(name="e2e.fail")
def fail(ctx, message):
    raise ValueError(message)


@activity(name="e2e.flaky")
def flaky(ctx, succeed_on):
    """Fails until attempt ``succeed_on``; returns the attempt that succeeded."""
    if ctx.attempt < succeed_on:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return ctx.attempt


@orchestrator(name="e2e.sequence")
def sequence(ctx, n):
    total = 0
    for i in range(n):
        total = yield ctx.call_activity(add, input=[total, i])
    return total


@orchestrator(name="e2e.fan_out")
def fan_out(ctx, n):
    results = yield when_all([ctx.call_activity(echo, input=i) for i in range(n)])
    return sum(results)


@orchestrator(name="e2e.catch_failure")
def catch_failure(ctx, _):
    try:
        yield ctx.call_activity(fail, input="boom")
    except TaskFailedError as exc:
        return {"caught": exc.details.error_type, "message": exc.details.message}
    return "not reached"


@orchestrator(name="e2e.uncaught_failure")
def uncaught_failure(ctx, _):
    yield ctx.call_activity(fail, input="kaput")
    return "not reached"


@orchestrator(name="e2e.retry")
def retry(ctx, succeed_on):
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=100),
                         max_number_of_attempts=4, backoff_coefficient=2.0)
    attempt = yield ctx.call_activity(flaky, input=succeed_on, retry_policy=policy)
    return attempt


@orchestrator(name="e2e.child")
def child(ctx, n):
    value = yield ctx.call_activity(add, input=[n, n])
    return value


@orchestrator(name="e2e.parent")
def parent(ctx, n):
    results = yield when_all([ctx.call_sub_orchestrator(child, input=i) for i in range(n)])
    return results


@orchestrator(name="e2e.wait_event")
def wait_event(ctx, names):
    received = []
    for name in names:
        received.append((yield ctx.wait_for_external_event(name)))
    return received


@orchestrator(name="e2e.event_or_timeout")
def event_or_timeout(ctx, seconds):
    event = ctx.wait_for_external_event("go")
    timer = ctx.create_timer(timedelta(seconds=seconds))
    winner = yield when_any([event, timer])
    return "event" if winner == event else "timeout"


@orchestrator(name="e2e.timer")
def timer(ctx, seconds):
    yield ctx.create_timer(timedelta(seconds=seconds))
    return ctx.current_utc_datetime.isoformat()


@orchestrator(name="e2e.waits_forever")
def waits_forever(ctx, _):
    yield ctx.wait_for_external_event("never")


@orchestrator(name="e2e.parent_of_waiters")
def parent_of_waiters(ctx, n):
    yield when_all([ctx.call_sub_orchestrator(waits_forever, input=None) for _ in range(n)])


@orchestrator(name="e2e.counter")
def counter(ctx, state):
    """Adds each 'inc' event to the count; continues as new after every event."""
    amount = yield ctx.wait_for_external_event("inc")
    count = state["count"] + amount
    if count >= state["until"]:
        return count
    ctx.continue_as_new({"count": count, "until": state["until"]}, save_events=True)


@orchestrator(name="e2e.custom_status")
def custom_status(ctx, _):
    ctx.set_custom_status({"step": 1})
    yield ctx.wait_for_external_event("next")
    ctx.set_custom_status({"step": 2})
    return "done"


@orchestrator(name="e2e.step_then_wait")
def step_then_wait(ctx, value):
    echoed = yield ctx.call_activity(echo, input=value)
    yield ctx.wait_for_external_event("finish")
    return echoed
