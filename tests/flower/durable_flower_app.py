"""The Celery app that the Flower test's worker and Flower subprocesses load with ``-A``.

The test process picks the backends with environment variables, so that the worker, Flower and
the test's own client (built with `make_app`) share one store, broker and queue:

- ``DURABLE_FLOWER_BROKER``: broker URL (required)
- ``DURABLE_FLOWER_STORE``: store URL (required)
- ``DURABLE_FLOWER_QUEUE``: the queue every task goes to (required)

It declares its own orchestrator and activities (names prefixed ``flower_e2e.``) so that the
worker runs nothing but them.
"""

from __future__ import annotations

import os

from celery import Celery
from workers import LazyApp, celery_app

from celery_durable import Durable, activity, orchestrator, when_all

ENV_BROKER = "DURABLE_FLOWER_BROKER"
ENV_STORE = "DURABLE_FLOWER_STORE"
ENV_QUEUE = "DURABLE_FLOWER_QUEUE"

ORCHESTRATOR = "flower_e2e.fan_out_then_total"
SQUARE = "flower_e2e.square"
TOTAL = "flower_e2e.total"


@activity(name=SQUARE)
def square(ctx, n):
    return n * n


@activity(name=TOTAL)
def total(ctx, values):
    return sum(values)


@orchestrator(name=ORCHESTRATOR)
def fan_out_then_total(ctx, n):
    """A fan-out of ``n`` activities, then one sequential activity over their results."""
    squares = yield when_all([ctx.call_activity(square, input=i) for i in range(1, n + 1)])
    return (yield ctx.call_activity(total, input=squares))


def make_app(broker_url: str, store_url: str, queue: str,
             name: str = "durable-flower") -> tuple[Celery, Durable]:
    """The app (and its Durable) that the worker, Flower and the test's client share."""
    app = celery_app(name, broker_url, queue, durable_sweep_interval=1.0,
                     durable_recovery_grace=5.0)
    return app, Durable(app, store_url=store_url)


def env_config(broker_url: str, store_url: str, queue: str) -> dict[str, str]:
    """The environment variables that make this module build the same app."""
    return {ENV_BROKER: broker_url, ENV_STORE: store_url, ENV_QUEUE: queue}


def _from_environment() -> tuple[Celery, Durable]:
    """The app the ``DURABLE_FLOWER_*`` variables describe."""
    return make_app(os.environ[ENV_BROKER], os.environ[ENV_STORE], os.environ[ENV_QUEUE])


#: ``app`` and ``durable``, built from the environment on first access (``celery -A`` looks
#: ``app`` up), so that the test process can import `make_app` without building one
__getattr__ = LazyApp(__name__, _from_environment)
