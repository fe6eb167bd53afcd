"""The orchestrator the rolling-upgrade test rolls out, written the version-aware way.

Version 2 of ``upgrade.order`` adds a step; instances started on version 1 must not take it (their
history has no such step), so the new code keeps the old path for them. The outputs say which
path ran, which worker version ran the ``upgrade.stamp`` activity and which finished the instance
(``WORKER_VERSION`` of the worker process; reading the environment is fine here because the
value only goes into the output, which is computed once).
"""

from __future__ import annotations

import os
from typing import Any

from celery_durable import Durable

ORDER = "upgrade.order"


def worker_version() -> str | None:
    return os.environ.get("WORKER_VERSION")


def stamp(ctx: Any, _: Any) -> str | None:
    """Which worker version ran this activity."""
    return worker_version()


def add(ctx: Any, pair: list[int]) -> int:
    return pair[0] + pair[1]


def order(ctx: Any, n: int) -> Any:
    yield ctx.wait_for_external_event("go")
    stamped = yield ctx.call_activity("upgrade.stamp")
    if ctx.version_at_least("2"):  # the step version 2 added
        n = yield ctx.call_activity("upgrade.add", input=[n, 100])
    return {"version": ctx.version, "value": n, "stamp": stamped,
            "finished_by": worker_version()}


def declare(durable: Durable, stamp_queue: str) -> None:
    """Register the orchestrator and its activities on ``durable``; ``upgrade.stamp`` goes to
    ``stamp_queue`` (so that a test can choose which worker runs it)."""
    durable.orchestrator(order, name=ORDER)
    durable.activity(stamp, name="upgrade.stamp", queue=stamp_queue)
    durable.activity(add, name="upgrade.add")
