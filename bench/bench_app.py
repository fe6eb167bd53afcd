"""The Celery app every benchmark worker loads (``celery -A bench_app worker``), and its tasks.

One worker subprocess runs both sides of every comparison, so both get the same flags, pool and
connections. Its configuration comes from environment variables that `harness.Cluster` sets:

- ``BENCH_BROKER`` / ``BENCH_TRANSPORT``: broker URL and transport options (JSON)
- ``BENCH_BACKEND``: result backend (Redis; used only by the plain chord's members)
- ``BENCH_STORE``: celery_durable store URL
- ``BENCH_QUEUE``: the queue every task goes to (unique per run)
- ``BENCH_MARKS``: folder where tasks leave time stamps (`mark`): one file per token, one line
  ``<time.time()> <text>`` per mark, appended (O_APPEND), so that the client reads the time a
  thing happened in the worker, not the time it noticed it
- ``BENCH_COUNTERS``: optional folder; each pool process rewrites ``<pid>.json`` (its episode
  runner's counters and per-task counts/seconds/SQL statements) every 0.1 s when they changed

Plain side: ``bench.plain_noop`` (marks when given a token), ``bench.plain_relay`` (sends
``plain_noop`` on: a two-hop relay), ``bench.plain_member`` (a chord member: keeps its result),
``bench.plain_mark`` (marks the token it is given; a chord callback takes its header's results
first). Our side: the ``bench.noop`` and ``bench.mark`` activities and
the orchestrators ``bench.seq``, ``bench.seq_local`` (local activities), ``bench.fanout``, ``bench.sleep`` and ``bench.events``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from celery import Celery  # noqa: E402
from celery.signals import task_postrun, task_prerun  # noqa: E402
from workers import LazyApp, celery_app  # noqa: E402

from celery_durable import Durable, activity, orchestrator, when_all  # noqa: E402

ENV_BROKER = "BENCH_BROKER"
ENV_TRANSPORT = "BENCH_TRANSPORT"
ENV_BACKEND = "BENCH_BACKEND"
ENV_STORE = "BENCH_STORE"
ENV_QUEUE = "BENCH_QUEUE"
ENV_MARKS = "BENCH_MARKS"
ENV_COUNTERS = "BENCH_COUNTERS"

PLAIN_NOOP = "bench.plain_noop"
PLAIN_MEMBER = "bench.plain_member"
PLAIN_MARK = "bench.plain_mark"
PLAIN_RELAY = "bench.plain_relay"
EPISODE_TASK = "celery_durable.episode"
TIMER_TASK = "celery_durable.timer"


def mark(token: str, text: str = "") -> None:
    """Append ``<now> <text>`` to the token's file in the marks folder (one write, O_APPEND)."""
    line = f"{time.time():.6f} {text}\n".encode()
    fd = os.open(os.path.join(os.environ[ENV_MARKS], token),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# -- our side ----------------------------------------------------------------------------------

@activity(name="bench.noop")
def noop(ctx: Any, _: Any = None) -> None:
    return None


@activity(name="bench.mark")
def mark_activity(ctx: Any, token: str) -> None:
    """Marks the moment it starts (the events workload's end point)."""
    mark(token)


@orchestrator(name="bench.seq")
def seq(ctx: Any, n: int) -> Any:
    """``n`` no-op activities one after the other."""
    for _ in range(n):
        yield ctx.call_activity(noop)
    return n


@orchestrator(name="bench.seq_local")
def seq_local(ctx: Any, n: int) -> Any:
    """``n`` no-op local activities one after the other (run in the episode, no broker hop)."""
    for _ in range(n):
        yield ctx.call_local_activity(noop)
    return n


@orchestrator(name="bench.fanout")
def fanout(ctx: Any, n: int) -> Any:
    """``n`` no-op activities at once, then fan-in (when_all)."""
    results = yield when_all([ctx.call_activity(noop) for _ in range(n)])
    return len(results)


@orchestrator(name="bench.sleep")
def sleep(ctx: Any, seconds: float) -> Any:
    """One durable timer."""
    yield ctx.create_timer(timedelta(seconds=seconds))
    return seconds


@orchestrator(name="bench.events")
def events(ctx: Any, rounds: int) -> Any:
    """``rounds`` times: wait for the event ``go`` (its data a marks token), then run the
    ``bench.mark`` activity with it."""
    for _ in range(rounds):
        token = yield ctx.wait_for_external_event("go")
        yield ctx.call_activity(mark_activity, input=token)
    return rounds


# -- the app -----------------------------------------------------------------------------------

def make_app(broker_url: str, store_url: str, queue: str, *, backend: str | None = None,
             transport: dict[str, Any] | None = None, name: str = "bench",
             client_episodes: bool = False) -> tuple[Celery, Durable]:
    """The app (worker and client alike) and its Durable; plain tasks are registered on it.
    ``client_episodes``: the client runs the episodes its calls cause (a client-side setting)."""
    app = celery_app(name, broker_url, queue, result_backend=backend, result_expires=600,
                     broker_transport_options=transport or {},
                     durable_client_episodes=client_episodes)
    durable = Durable(app, store_url=store_url)

    @app.task(name=PLAIN_NOOP, shared=False)
    def plain_noop(token: str | None = None, text: str = "") -> None:
        if token:
            mark(token, text)

    @app.task(name=PLAIN_RELAY, shared=False)
    def plain_relay(token: str, text: str = "") -> None:
        """Sends ``plain_noop`` on: the plain shape of an event (client -> task -> task)."""
        app.send_task(PLAIN_NOOP, (token, text))

    @app.task(name=PLAIN_MEMBER, shared=False, ignore_result=False)
    def plain_member() -> None:
        return None

    @app.task(name=PLAIN_MARK, shared=False)
    def plain_mark(_results: Any = None, token: str = "", text: str = "") -> None:
        mark(token, text)

    return app, durable


def _from_environment() -> tuple[Celery, Durable]:
    built = make_app(os.environ[ENV_BROKER], os.environ[ENV_STORE], os.environ[ENV_QUEUE],
                     backend=os.environ.get(ENV_BACKEND) or None,
                     transport=json.loads(os.environ.get(ENV_TRANSPORT) or "{}"))
    if os.environ.get(ENV_COUNTERS):
        task_prerun.connect(_task_started, weak=False)
        task_postrun.connect(_task_ended, weak=False)
    return built


__getattr__ = _lazy = LazyApp(__name__, _from_environment)

# -- counters (worker side) ----------------------------------------------------------------------

#: tasks this pool process ran, by name: [count, seconds inside the task, SQL statements]
_tasks: dict[str, list[float]] = {}
_running: dict[str, tuple[float, Any, Any]] = {}
_changed = threading.Event()
_writer: list[int] = []  # the pid whose writer thread runs


def _task_started(sender: Any = None, task_id: str = "", **_: Any) -> None:
    counting = _lazy.built[1].store.statement_count() if _lazy.built else None
    counter = counting.__enter__() if counting is not None else None
    _running[task_id] = (time.perf_counter(), counting, counter)


def _task_ended(sender: Any = None, task_id: str = "", **_: Any) -> None:
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
    _changed.set()
    if _writer != [os.getpid()]:  # first task in this (forked) pool process
        _writer[:] = [os.getpid()]
        threading.Thread(target=_write_counters, daemon=True, name="bench-counters").start()


def _write_counters() -> None:
    """Rewrite this process's counters file every 0.1 s while they change (off the hot path:
    a file write per task would cost both sides alike, but noise)."""
    folder = os.environ[ENV_COUNTERS]
    path = os.path.join(folder, f"{os.getpid()}.json")
    while True:
        _changed.wait()
        time.sleep(0.1)
        _changed.clear()
        runner = _lazy.built[1].runner if _lazy.built else None
        data = {"pid": os.getpid(), **(runner.counters() if runner else {}),
                "tasks": {k: list(v) for k, v in _tasks.items()}}
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)
