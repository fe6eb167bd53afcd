"""Orchestrators and activities of the chaos, lost-message and restart tests, and what each
kind of orchestration must end with.

Every activity run inserts a row into the table ``chaos_runs`` of the database named by
``CHAOS_RUNS_URL`` (the test's store) before it does its work, so that the test can count runs,
including those a kill interrupted and the broker or the sweeper dispatched again.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from celery_durable import RetryPolicy, activity, orchestrator, when_all

runs = sa.Table(
    "chaos_runs", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(300)), sa.Column("task_id", sa.Integer),
    sa.Column("attempt", sa.Integer), sa.Column("activity", sa.String(100)),
    sa.Column("pid", sa.Integer))

_engines: dict[int, sa.Engine] = {}
_lock = threading.Lock()


def _engine() -> sa.Engine | None:
    url = os.environ.get("CHAOS_RUNS_URL")
    if not url:
        return None
    with _lock:  # one engine per process (a forked pool child must not share its parent's)
        engine = _engines.get(os.getpid())
        if engine is None:
            engine = _engines[os.getpid()] = sa.create_engine(url, pool_pre_ping=True)
        return engine


def _record_run(ctx: Any, name: str) -> None:
    engine = _engine()
    if engine is None or ctx.orchestration_id is None:
        return
    for attempt in range(30):  # the database may be restarting: runs are counted all the same
        try:
            with engine.begin() as conn:
                conn.execute(runs.insert().values(
                    instance_id=ctx.orchestration_id, task_id=ctx.task_id,
                    attempt=ctx.attempt, activity=name, pid=os.getpid()))
            return
        except sa.exc.OperationalError:
            time.sleep(min(0.1 * 2 ** attempt, 1.0))


@activity(name="chaos.step")
def step(ctx: Any, n: int) -> int:
    """Returns ``n + 1`` after a short pause (so that kills land mid-activity too)."""
    _record_run(ctx, "chaos.step")
    time.sleep(random.uniform(0.02, 0.15))
    return n + 1


class Transient(Exception):
    """A failure that goes away when tried again."""


@activity(name="chaos.flaky")
def flaky(ctx: Any, fail_until: int) -> int:
    """Fails on attempts before ``fail_until``; returns the attempt that succeeded."""
    _record_run(ctx, "chaos.flaky")
    time.sleep(random.uniform(0.02, 0.1))
    if ctx.attempt < fail_until:
        raise Transient(f"attempt {ctx.attempt} fails")
    return ctx.attempt


RETRY = RetryPolicy(first_retry_interval=timedelta(seconds=0.3), max_number_of_attempts=5)


@orchestrator(name="chaos.sequence")
def sequence(ctx: Any, n: int) -> Any:
    total = 0
    for i in range(n):
        total += yield ctx.call_activity(step, input=i)
    return total


@orchestrator(name="chaos.fan_out")
def fan_out(ctx: Any, n: int) -> Any:
    results = yield when_all([ctx.call_activity(step, input=i) for i in range(n)])
    return sum(results)


@orchestrator(name="chaos.parent")
def parent(ctx: Any, n: int) -> Any:
    results = yield when_all([ctx.call_sub_orchestrator(sequence, input=2) for _ in range(n)])
    return sum(results)


@orchestrator(name="chaos.timer")
def timer(ctx: Any, seconds: float) -> Any:
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (yield ctx.call_activity(step, input=0))


@orchestrator(name="chaos.event")
def event(ctx: Any, _: Any) -> Any:
    data = yield ctx.wait_for_external_event("go")
    return (yield ctx.call_activity(step, input=data))


@orchestrator(name="chaos.retry")
def retry(ctx: Any, fail_until: int) -> Any:
    first = yield ctx.call_activity(flaky, input=fail_until, retry_policy=RETRY)
    second = yield ctx.call_activity(step, input=first)
    return second


@dataclass(frozen=True)
class Job:
    """One orchestration of a workload: its orchestrator, input and expected output."""

    orchestrator: str
    input: Any
    expected: Any
    #: data of the "go" event the test raises (chaos.event only)
    event: Any = None


def job(kind: str, rng: random.Random) -> Job:
    """A random orchestration of ``kind``."""
    if kind == "sequence":
        n = rng.randint(2, 5)
        return Job("chaos.sequence", n, n * (n + 1) // 2)
    if kind == "fan_out":
        n = rng.randint(3, 10)
        return Job("chaos.fan_out", n, n * (n + 1) // 2)
    if kind == "parent":
        n = rng.randint(2, 3)
        return Job("chaos.parent", n, 3 * n)
    if kind == "timer":
        return Job("chaos.timer", round(rng.uniform(0.5, 3.0), 2), 1)
    if kind == "event":
        data = rng.randint(1, 1000)
        return Job("chaos.event", None, data + 1, event=data)
    if kind == "retry":
        fail_until = rng.randint(2, 3)
        return Job("chaos.retry", fail_until, fail_until + 1)
    raise ValueError(kind)


KINDS = ("sequence", "fan_out", "parent", "timer", "event", "retry")


def workload(count: int, seed: int) -> list[Job]:
    """``count`` orchestrations, every kind in turn, with random sizes."""
    rng = random.Random(seed)
    return [job(KINDS[i % len(KINDS)], rng) for i in range(count)]
