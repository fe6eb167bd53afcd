"""A Celery app a real ``celery worker`` subprocess loads with ``-A worker_app``.

The test process chooses the backends through environment variables, so that every worker it
starts (and its own client, built with `make_app`) talks to the same store, broker and queue:

- ``DURABLE_E2E_BROKER``: broker URL (default ``filesystem://``)
- ``DURABLE_E2E_BROKER_OPTIONS``: JSON of ``broker_transport_options`` (default ``{}``)
- ``DURABLE_E2E_STORE``: store URL (default: celery_durable's embedded SQLite file)
- ``DURABLE_E2E_QUEUE``: the queue every task goes to (default ``durable-e2e-workers``)
- ``DURABLE_E2E_COUNTERS``: if set, a folder where each pool process keeps ``<pid>.json``, its
  episode runner's counters (episodes, events processed, cache hits and misses), rewritten
  after every task it runs

The orchestrators and activities are those of `workflows` (imported: they register on every
``Durable``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import workflows  # noqa: F401  (registers the orchestrators and activities)
from celery import Celery
from celery.signals import task_postrun
from workers import LazyApp, celery_app

from celery_durable import Durable

ENV_BROKER = "DURABLE_E2E_BROKER"
ENV_BROKER_OPTIONS = "DURABLE_E2E_BROKER_OPTIONS"
ENV_STORE = "DURABLE_E2E_STORE"
ENV_QUEUE = "DURABLE_E2E_QUEUE"
ENV_COUNTERS = "DURABLE_E2E_COUNTERS"


def make_app(broker_url: str, broker_options: dict[str, Any], store_url: str | None,
             queue: str, name: str = "e2e-workers") -> tuple[Celery, Durable]:
    """The app (and its Durable) the worker subprocesses and the test's client share."""
    app = celery_app(
        name, broker_url, queue, broker_transport_options=broker_options,
        # recover quickly from anything lost, but not so eagerly that a busy fan-out's
        # legitimately waiting inbox rows are "recovered" all the time
        durable_sweep_interval=1.0, durable_recovery_grace=5.0)
    durable = Durable(app, store_url=store_url)
    return app, durable


def env_config(broker_url: str, broker_options: dict[str, Any], store_url: str | None,
               queue: str) -> dict[str, str]:
    """The environment variables that make this module build the same app."""
    env = {ENV_BROKER: broker_url, ENV_BROKER_OPTIONS: json.dumps(broker_options),
           ENV_QUEUE: queue}
    if store_url:
        env[ENV_STORE] = store_url
    return env


def _from_environment() -> tuple[Celery, Durable]:
    """The app the ``DURABLE_E2E_*`` variables describe; its pool processes keep counters."""
    built = make_app(
        os.environ.get(ENV_BROKER, "filesystem://"),
        json.loads(os.environ.get(ENV_BROKER_OPTIONS) or "{}"),
        os.environ.get(ENV_STORE) or None,
        os.environ.get(ENV_QUEUE, "durable-e2e-workers"),
    )
    task_postrun.connect(_dump_counters, weak=False)
    return built


#: ``app`` and ``durable``, built from the environment on first access (``celery -A`` looks
#: ``app`` up), so that the test process can import `make_app` without building one
__getattr__ = _lazy = LazyApp(__name__, _from_environment)


def _dump_counters(**_: Any) -> None:
    folder = os.environ.get(ENV_COUNTERS)
    if not folder or _lazy.built is None:
        return
    runner = _lazy.built[1].runner
    data = json.dumps({"pid": os.getpid(), **runner.counters()})
    path = os.path.join(folder, f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
