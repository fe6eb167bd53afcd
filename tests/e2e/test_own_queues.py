"""Timers and starts on queues of their own (`runtime.timer_queue`, `runtime.start_queue`),
with a real ``celery worker`` (PostgreSQL + Redis): a backlog of starts delays neither a due
timer nor the events and activity completions of a running instance.

The worker runs one episode at a time (``--concurrency 1``, prefetch 1) and is started with
``-Q <episode queue>`` only: its bootstep adds the timer queue. 150 starts whose first episode
works 50 ms each make a backlog of some 7.5 s; then an event, run by the client
(``durable_client_episodes``), makes an instance create a 1-second timer, whose message is
published behind that backlog. It fires within a second or so of its time, while most of the
backlog still waits; on the episode queue it would wait for the whole backlog.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import timer_queue_app as tq
from services import REDIS_URL, database, require
from worker_app import env_config
from workers import WorkerProcess, delete_queue, logs_on_failure, subprocess_env, wait_until

from celery_durable import Durable, OrchestrationStatus
from celery_durable.runtime.timer_queue import timer_queue

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
TESTS_DIR = E2E_DIR.parent
BROKER = f"{REDIS_URL}/3"
BACKLOG = 150
#: how late the timer may fire (the backlog takes some 7.5 s)
LATENESS = timedelta(seconds=2.5)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Durable, Durable, WorkerProcess]]:
    """(the client that sends starts, the client that runs events' episodes, the worker)"""
    require("redis")
    queue = f"durable-tq-{uuid.uuid4().hex[:8]}"
    with database("postgresql", "durable_timer_queue") as store_url:
        _, durable = tq.make_app(BROKER, {}, store_url, queue, name="e2e-tq-client")
        _, here = tq.make_app(BROKER, {}, store_url, queue, name="e2e-tq-client-episodes",
                              durable_client_episodes=True)
        durable.store.create_schema()
        worker = WorkerProcess("timer_queue_app:app", f"tq-{uuid.uuid4().hex[:6]}@e2e",
                               env=subprocess_env(env_config(BROKER, {}, store_url, queue),
                                                  [E2E_DIR, TESTS_DIR]),
                               cwd=E2E_DIR, log_path=tmp_path / "worker.log", concurrency=1,
                               options=["-Q", queue])
        try:
            yield durable, here, worker
        finally:
            worker.stop()
            durable.store.dispose()
            here.store.dispose()
            delete_queue(BROKER, queue)
            delete_queue(BROKER, timer_queue(durable))


def test_a_backlog_of_activities_does_not_delay_a_due_timer(
        setup: tuple[Durable, Durable, WorkerProcess]) -> None:
    """150 activities of 50 ms on the default queue, then a 1-second timer created behind
    them: it fires on time while the activities still run."""
    durable, here, worker = setup
    client = durable.client
    with logs_on_failure([worker]):
        iid = client.schedule_new_orchestration(tq.waiter)
        wait_until(f"{worker.name} consumes {timer_queue(durable)}",
                   lambda: f".> {timer_queue(durable)}" in worker.log(),
                   time.monotonic() + 60, [worker])
        wait_until(f"{iid} waits for its event",
                   lambda: client.get_orchestration_state(iid).runtime_status
                   is OrchestrationStatus.RUNNING, time.monotonic() + 60, [worker])
        backlog = client.schedule_new_orchestration(tq.busy, input=BACKLOG)
        wait_until(f"{backlog} sent its activities",
                   lambda: client.get_orchestration_state(backlog).runtime_status
                   is OrchestrationStatus.RUNNING, time.monotonic() + 60, [worker])
        here.client.raise_orchestration_event(iid, "go")  # the timer is created now, after them
        created = next(e for e in client.get_orchestration_history(iid)
                       if e.kind == "TimerCreated")
        fire_at = datetime.fromisoformat(created.data["fire_at"])
        state = wait_until(f"{iid} completed", lambda: _ended(durable, iid),
                           time.monotonic() + 60, [worker], interval=0.05)
        backlog_ended = _ended(durable, backlog)
        fired = next(e for e in client.get_orchestration_history(iid)
                     if e.kind == "TimerFired")
    assert state.runtime_status is OrchestrationStatus.COMPLETED, state.failure_details
    assert fired.timestamp - fire_at < LATENESS, (fired.timestamp, fire_at)
    assert backlog_ended is None, "the activities had all run: no backlog to overtake"


def _ended(durable: Durable, instance_id: str) -> object:
    state = durable.client.get_orchestration_state(instance_id)
    return state if state is not None and state.runtime_status.is_terminal else None


def test_a_backlog_of_starts_does_not_hold_up_a_running_instance(
        setup: tuple[Durable, Durable, WorkerProcess]) -> None:
    """The event's episode and both activities (each completion's episode inline) go ahead
    of the 150 starts sent before them: their first episodes wait on the starts queue."""
    durable, _, worker = setup
    client = durable.client
    with logs_on_failure([worker]):
        iid = client.schedule_new_orchestration(tq.stepper)
        wait_until(f"{iid} waits for its event",
                   lambda: client.get_orchestration_state(iid).runtime_status
                   is OrchestrationStatus.RUNNING, time.monotonic() + 60, [worker])
        starts = [client.schedule_new_orchestration(tq.slow_start) for _ in range(BACKLOG)]
        client.raise_orchestration_event(iid, "go")  # a worker runs its episode
        state = wait_until(f"{iid} completed", lambda: _ended(durable, iid),
                           time.monotonic() + 60, [worker], interval=0.05)
        done = sum(_ended(durable, s) is not None for s in starts)
        wait_until("the backlog ran", lambda: all(_ended(durable, s) for s in starts),
                   time.monotonic() + 60, [worker], interval=0.2)
    assert state.runtime_status is OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == 2
    assert done < BACKLOG / 2, f"{done} of {BACKLOG} starts had run before the instance ended"
