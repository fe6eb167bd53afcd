"""Orchestrators and activities of the crash-point and re-dispatch tests (registered on every
``Durable``, as ``@orchestrator`` / ``@activity`` without one do)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from celery_durable import activity, orchestrator


@activity(name="crash.add_one")
def add_one(ctx: Any, x: int) -> int:
    return x + 1


@activity(name="crash.long_once")
def long_once(ctx: Any, spec: dict[str, Any]) -> str:
    """Sleeps ``spec["seconds"]`` the first time it runs (it creates the file ``spec["started"]``
    then), returns at once when run again; appends every run's pid to ``spec["runs"]``."""
    with open(spec["runs"], "a") as runs:
        runs.write(f"{os.getpid()}\n")
    if not os.path.exists(spec["started"]):
        open(spec["started"], "w").close()
        time.sleep(spec["seconds"])
    return "done"


@orchestrator(name="crash.child")
def child(ctx: Any, x: int) -> Any:
    y = yield ctx.call_activity(add_one, input=x)
    return y * 10


@orchestrator(name="crash.parent")
def parent(ctx: Any, x: int) -> Any:
    """An activity, a timer and a sub-orchestration (with an activity of its own): for x,
    ((x + 1) + 1) * 10 + 1."""
    a = yield ctx.call_activity(add_one, input=x)
    yield ctx.create_timer(timedelta(seconds=0.2))
    b = yield ctx.call_sub_orchestrator(child, input=a)
    return b + 1


@orchestrator(name="crash.long")
def long(ctx: Any, spec: dict[str, Any]) -> Any:
    return (yield ctx.call_activity(long_once, input=spec))
