"""A Celery app for ``celery -A versioned_worker worker``, versioned by environment variables.

- ``VERSIONED_BROKER``, ``VERSIONED_STORE``: broker and store URLs
- ``VERSIONED_QUEUE``: the default (episode) queue; ``upgrade.stamp`` goes to ``<queue>.stamp``
- ``WORKER_VERSION``, ``WORKER_MATCH``, ``WORKER_FAILURE``: the worker's ``VersioningOptions``
  (its default_version is its version)
- ``WORKER_WITHOUT_CODE``: set, the worker imports none of the orchestrators and activities

A ``durable_stats`` remote-control command reports what this worker did (run it with
``--pool threads`` so that the counters live in one process): episodes run and rejected, task
messages published (by task and queue) and executed, and its CPU time.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from celery import signals
from celery.worker.control import control_command
from versioned_workflows import declare
from workers import celery_app

from celery_durable import Durable, VersioningOptions

app = celery_app("versioned", os.environ["VERSIONED_BROKER"], os.environ["VERSIONED_QUEUE"],
                 durable_sweep_interval=0.5, durable_recovery_grace=1.0)
version = os.environ["WORKER_VERSION"]
durable = Durable(app, store_url=os.environ["VERSIONED_STORE"], versioning=VersioningOptions(
    version=version, default_version=version, match_strategy=os.environ["WORKER_MATCH"],
    failure_strategy=os.environ["WORKER_FAILURE"]))
if not os.environ.get("WORKER_WITHOUT_CODE"):  # else: a worker that imports no orchestrator
    declare(durable, f"{os.environ['VERSIONED_QUEUE']}.stamp")

published: Counter[str] = Counter()
executed: Counter[str] = Counter()


@signals.before_task_publish.connect
def _count_published(sender: str | None = None, routing_key: str | None = None,
                     **_: Any) -> None:
    published[f"{sender} -> {routing_key}"] += 1


@signals.task_prerun.connect
def _count_executed(sender: Any = None, **_: Any) -> None:
    executed[sender.name] += 1


@control_command()
def durable_stats(state: Any) -> dict[str, Any]:
    """What this worker has done so far."""
    return {"episodes": durable.runner.episodes, "rejected": durable.runner.rejected,
            "published": dict(published), "executed": dict(executed),
            "cpu": time.process_time(), "queues": sorted(app.amqp.queues.consume_from)}
