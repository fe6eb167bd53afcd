"""The Celery app of the timer-queue test's worker subprocess (``celery -A timer_queue_app:app
worker``), configured by the ``DURABLE_E2E_*`` variables of `worker_app`: orchestrators whose
first episode is slow (a backlog of starts), one that waits for an event, then a timer, and one
that waits for an event, then runs two activities."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from typing import Any

from celery import Celery
from worker_app import ENV_BROKER, ENV_BROKER_OPTIONS, ENV_QUEUE, ENV_STORE
from workers import LazyApp, celery_app

from celery_durable import Durable, activity, orchestrator, when_all

#: seconds of work in each slow start's first episode
START_WORK = 0.05
TIMER_SECONDS = 1.0


@orchestrator(name="tq.slow_start")
def slow_start(ctx):  # type: ignore[no-untyped-def]
    if not ctx.is_replaying:
        time.sleep(START_WORK)  # the work of a first episode, in a backlog of them
    return ctx.instance_id


@orchestrator(name="tq.waiter")
def waiter(ctx):  # type: ignore[no-untyped-def]
    yield ctx.wait_for_external_event("go")
    yield ctx.create_timer(timedelta(seconds=TIMER_SECONDS))
    return ctx.current_utc_datetime.isoformat()


@activity(name="tq.step")
def step(ctx, n):  # type: ignore[no-untyped-def]
    return n + 1


@activity(name="tq.work")
def work(ctx, seconds):  # type: ignore[no-untyped-def]
    time.sleep(seconds)  # the work of an activity, in a backlog of them
    return seconds


@orchestrator(name="tq.busy")
def busy(ctx, n):  # type: ignore[no-untyped-def]
    """A backlog of ``n`` activities on the default queue."""
    done = yield when_all([ctx.call_activity(work, input=START_WORK) for _ in range(n)])
    return len(done)


@orchestrator(name="tq.stepper")
def stepper(ctx):  # type: ignore[no-untyped-def]
    """A running instance: once told to go, two activities (each completion's episode runs
    inline in the activity's worker), then the end."""
    yield ctx.wait_for_external_event("go")
    n = yield ctx.call_activity(step, input=0)
    return (yield ctx.call_activity(step, input=n))


def make_app(broker_url: str, broker_options: dict[str, Any], store_url: str | None,
             queue: str, name: str = "e2e-timer-queue", **conf: Any) -> tuple[Celery, Durable]:
    app = celery_app(name, broker_url, queue, broker_transport_options=broker_options, **conf)
    return app, Durable(app, store_url=store_url)


def _from_environment() -> tuple[Celery, Durable]:
    return make_app(os.environ.get(ENV_BROKER, "filesystem://"),
                    json.loads(os.environ.get(ENV_BROKER_OPTIONS) or "{}"),
                    os.environ.get(ENV_STORE) or None,
                    os.environ.get(ENV_QUEUE, "durable-e2e-timer-queue"))


__getattr__ = LazyApp(__name__, _from_environment)
