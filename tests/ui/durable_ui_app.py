"""The Celery app that the dashboard test's worker and ``durable ui`` subprocesses load with -A.

The test process picks the backends with environment variables, so that the worker, the
dashboard and the test's own client (built with `make_app`) share one store, broker and queue:
``DURABLE_UI_TEST_BROKER``, ``DURABLE_UI_TEST_STORE`` and ``DURABLE_UI_TEST_QUEUE`` (required).

Its orchestrators and activities (names prefixed ``ui_e2e.``) give the instance page something
of every kind to show: activities, a retried activity, a timer, a sub-orchestration, an event
wait, a custom status and a failure.
"""

from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery
from workers import LazyApp, celery_app

from celery_durable import (
    Durable,
    EntityInstanceId,
    RetryPolicy,
    activity,
    entity,
    orchestrator,
)

ENV_BROKER = "DURABLE_UI_TEST_BROKER"
ENV_STORE = "DURABLE_UI_TEST_STORE"
ENV_QUEUE = "DURABLE_UI_TEST_QUEUE"

ORDER = "ui_e2e.order"
CHILD = "ui_e2e.ship"
WAITER = "ui_e2e.waiter"
BROKEN = "ui_e2e.broken"
#: attempts of ``flaky`` that fail before one succeeds
FLAKY_FAILURES = 2


STOCK = "ui_stock"
HOLDER = "ui_e2e.holder"


@entity(name=STOCK)
def stock(ctx, amount):
    """A stock level per key (the entities page's example)."""
    ctx.set_state({"units": ctx.get_state(dict, {"units": 0})["units"] + amount})


@orchestrator(name=HOLDER)
def holder(ctx, key):
    """Holds the lock of stock ``key`` until its event ``release`` comes."""
    with (yield ctx.lock_entities([EntityInstanceId(STOCK, key)])):
        yield ctx.wait_for_external_event("release")


@activity(name="ui_e2e.reserve")
def reserve(ctx, order):
    """Returns the Celery task id it ran under (the test compares it with the page's link)."""
    return {"reserved": order["items"], "celery_task_id": ctx.celery_task_id}


@activity(name="ui_e2e.charge")
def charge(ctx, order):
    if ctx.attempt <= FLAKY_FAILURES:
        raise ConnectionError(f"payment gateway timeout (attempt {ctx.attempt})")
    return {"charged": order["total"]}


@activity(name="ui_e2e.explode")
def explode(ctx, value):
    raise ValueError(f"cannot handle {value!r}")


@orchestrator(name=CHILD)
def ship(ctx, order):
    return (yield ctx.call_activity(reserve, input={"items": order["items"]}))


@orchestrator(name=ORDER)
def order(ctx, order):
    """Reserve, charge (retried), cool off (a timer), ship (a sub-orchestration), then wait
    for an approval event."""
    reserved = yield ctx.call_activity(reserve, input=order)
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=200),
                         max_number_of_attempts=FLAKY_FAILURES + 1)
    receipt = yield ctx.call_activity(charge, input=order, retry_policy=policy)
    yield ctx.create_timer(timedelta(milliseconds=300))
    shipped = yield ctx.call_sub_orchestrator(ship, input=order)
    ctx.set_custom_status({"step": "waiting for approval"})
    approval = yield ctx.wait_for_external_event("approval")
    ctx.set_custom_status({"step": "done"})
    return {"reserved": reserved, "receipt": receipt, "shipped": shipped, "approval": approval}


@orchestrator(name=WAITER)
def waiter(ctx, label):
    """Waits for event ``go`` and returns its data; a sub-orchestration of itself when its
    input asks for one (``{"child": true}``), so that terminate can be recursive."""
    if isinstance(label, dict) and label.get("child"):
        ctx.call_sub_orchestrator(waiter, input="child", instance_id=f"{ctx.instance_id}-child")
    return (yield ctx.wait_for_external_event("go"))


@orchestrator(name=BROKEN)
def broken(ctx, value):
    return (yield ctx.call_activity(explode, input=value))


def make_app(broker_url: str, store_url: str, queue: str,
             name: str = "durable-ui-test") -> tuple[Celery, Durable]:
    """The app (and its Durable) that the worker, the dashboard and the test's client share."""
    app = celery_app(name, broker_url, queue, durable_sweep_interval=1.0,
                     durable_recovery_grace=5.0)
    return app, Durable(app, store_url=store_url)


def env_config(broker_url: str, store_url: str, queue: str) -> dict[str, str]:
    """The environment variables that make this module build the same app."""
    return {ENV_BROKER: broker_url, ENV_STORE: store_url, ENV_QUEUE: queue}


def _from_environment() -> tuple[Celery, Durable]:
    return make_app(os.environ[ENV_BROKER], os.environ[ENV_STORE], os.environ[ENV_QUEUE])


#: ``app`` and ``durable``, built from the environment on first access (``celery -A`` looks
#: ``app`` up), so that the test process can import `make_app` without building one
__getattr__ = LazyApp(__name__, _from_environment)
