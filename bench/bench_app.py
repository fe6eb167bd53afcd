"""The Celery app ``bench/seq.py``'s worker subprocess loads with ``-A bench_app``.

Config from environment variables (set by ``seq.py``):

- ``BENCH_BROKER``: broker URL (Redis db 9)
- ``BENCH_STORE``: celery_durable store URL (a fresh PostgreSQL database)
- ``BENCH_QUEUE``: the queue every task goes to (unique per run)
- ``BENCH_DONE_URL``: Redis URL (db 10) where the plain chain's last task signals the end
- ``BENCH_COUNTERS``: optional folder; each pool process keeps ``<pid>.json`` with its episode
  runner's counters, rewritten after every task it runs

Tasks: ``bench.plain_relay`` (sends itself on ``remaining - 1`` times, then signals like
``plain_noop``), ``bench.plain_noop`` (a plain Celery task; given a ``token`` it LPUSHes the time to that
Redis key, so that the client can BLPOP for the end of a chain), the ``bench.noop`` activity
and the ``bench.seq`` orchestrator (``n`` sequential calls of ``bench.noop``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from celery import Celery  # noqa: E402
from celery.signals import task_postrun, task_prerun  # noqa: E402
from workers import LazyApp, celery_app  # noqa: E402

from celery_durable import Durable, activity, orchestrator  # noqa: E402

ENV_BROKER = "BENCH_BROKER"
ENV_STORE = "BENCH_STORE"
ENV_QUEUE = "BENCH_QUEUE"
ENV_DONE_URL = "BENCH_DONE_URL"
ENV_COUNTERS = "BENCH_COUNTERS"
PLAIN_NOOP = "bench.plain_noop"
EPISODE_TASK_NAME = "celery_durable.episode"
PLAIN_RELAY = "bench.plain_relay"

_redis: Any = None


def _done_client() -> Any:
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(os.environ[ENV_DONE_URL])
    return _redis


@activity(name="bench.noop")
def noop(ctx: Any, _: Any = None) -> None:
    return None


@orchestrator(name="bench.seq")
def seq(ctx: Any, n: int) -> int:
    for _ in range(n):
        yield ctx.call_activity(noop)
    return n


def make_app(broker_url: str, store_url: str, queue: str,
             name: str = "bench") -> tuple[Celery, Durable]:
    app = celery_app(name, broker_url, queue)
    durable = Durable(app, store_url=store_url)

    @app.task(name=PLAIN_NOOP, shared=False)
    def plain_noop(token: str | None = None) -> None:
        if token:
            _done_client().lpush(token, time.time())

    @app.task(name=PLAIN_RELAY, shared=False)
    def plain_relay(remaining: int, token: str) -> None:
        """One hop of a relay: sends itself on with ``remaining - 1`` (no chain payload)."""
        if remaining > 1:
            app.send_task(PLAIN_RELAY, (remaining - 1, token))
        else:
            _done_client().lpush(token, time.time())

    return app, durable


def env_config(broker_url: str, store_url: str, queue: str, done_url: str) -> dict[str, str]:
    return {ENV_BROKER: broker_url, ENV_STORE: store_url, ENV_QUEUE: queue,
            ENV_DONE_URL: done_url}


def _from_environment() -> tuple[Celery, Durable]:
    built = make_app(os.environ[ENV_BROKER], os.environ[ENV_STORE], os.environ[ENV_QUEUE])
    task_prerun.connect(_count_task, weak=False)
    task_postrun.connect(_dump_counters, weak=False)
    return built


#: tasks this pool process ran, by name: [count, seconds inside the task, SQL statements]
_tasks: dict[str, list[float]] = {}
_running: dict[str, tuple[float, Any, Any]] = {}


def _count_task(sender: Any = None, task_id: str = "", **_: Any) -> None:
    counting = _lazy.built[1].store.statement_count() if _lazy.built else None
    counter = counting.__enter__() if counting is not None else None
    _running[task_id] = (time.perf_counter(), counting, counter)


def _end_task(sender: Any, task_id: str) -> None:
    started = _running.pop(task_id, None)
    if started is None:
        return
    start, counting, counter = started
    if counting is not None:
        counting.__exit__(None, None, None)
    entry = _tasks.setdefault(getattr(sender, "name", str(sender)), [0, 0.0, 0])
    entry[0] += 1
    entry[1] += time.perf_counter() - start
    entry[2] += counter.count if counter is not None else 0


__getattr__ = _lazy = LazyApp(__name__, _from_environment)


def _dump_counters(sender: Any = None, task_id: str = "", **_: Any) -> None:
    _end_task(sender, task_id)
    folder = os.environ.get(ENV_COUNTERS)
    if not folder or _lazy.built is None:
        return
    runner = _lazy.built[1].runner
    data = json.dumps({"pid": os.getpid(), **runner.counters(), "tasks": _tasks})
    path = os.path.join(folder, f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
