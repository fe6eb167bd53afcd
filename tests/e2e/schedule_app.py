"""The Celery app of the schedule and concurrency-limit tests' worker subprocesses
(``celery -A schedule_app:app worker``), configured by the same ``DURABLE_E2E_*`` variables as
`worker_app`, with a quick sweeper (it fires the ticks) and a quick recovery (a killed worker's
work is taken over within seconds)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import Celery
from worker_app import ENV_BROKER, ENV_BROKER_OPTIONS, ENV_QUEUE, ENV_STORE
from workers import LazyApp, celery_app

from celery_durable import Durable, activity, orchestrator

LIMIT = 3


@activity(name="sched.e2e.nap")
def nap(ctx, seconds):  # type: ignore[no-untyped-def]
    time.sleep(seconds)
    return seconds


@orchestrator(name="sched.e2e.tick")
def tick(ctx, label):  # type: ignore[no-untyped-def]
    return (yield ctx.call_activity(nap, input=0.01)) and label


@orchestrator(name="sched.e2e.limited", concurrency_limit=LIMIT)
def limited(ctx, seconds):  # type: ignore[no-untyped-def]
    yield ctx.call_activity(nap, input=seconds)
    return ctx.instance_id


def make_app(broker_url: str, broker_options: dict[str, Any], store_url: str | None,
             queue: str, name: str = "e2e-schedules") -> tuple[Celery, Durable]:
    app = celery_app(name, broker_url, queue, broker_transport_options=broker_options,
                     durable_sweep_interval=0.2, durable_recovery_grace=2.0,
                     durable_activity_redispatch_after=3.0)
    return app, Durable(app, store_url=store_url)


def _from_environment() -> tuple[Celery, Durable]:
    return make_app(os.environ.get(ENV_BROKER, "filesystem://"),
                    json.loads(os.environ.get(ENV_BROKER_OPTIONS) or "{}"),
                    os.environ.get(ENV_STORE) or None,
                    os.environ.get(ENV_QUEUE, "durable-e2e-schedules"))


__getattr__ = LazyApp(__name__, _from_environment)
