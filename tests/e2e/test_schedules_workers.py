"""Schedules and concurrency limits on two real ``celery worker`` subprocesses, both running
sweepers (there is no beat): PostgreSQL + Redis, and the embedded default (SQLite file +
filesystem broker).

- every tick of a 1-second schedule starts exactly one instance (no duplicate, no gap) while two
  sweepers race for it; the same when one worker is SIGKILLed half-way and another one starts;
- pause, resume, trigger and delete against running workers;
- ``concurrency_limit=3`` with 20 instances started at once: the store, sampled all along, never
  shows more than 3 RUNNING, the started ones always form a prefix of the creation order (FIFO),
  and all 20 complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import schedule_app as sa
from services import REDIS_URL, database, require
from worker_app import env_config
from workers import (
    WorkerProcess,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, OrchestrationStatus

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
TESTS_DIR = E2E_DIR.parent
COMPLETED = OrchestrationStatus.COMPLETED
BACKENDS = ["postgresql-redis", "sqlite-filesystem"]
#: a tick starts within this of its time (sweep interval 0.2 s, plus a busy 2-core machine)
LATENESS = timedelta(seconds=2.5)


@dataclass
class Cluster:
    durable: Durable
    env: dict[str, str]
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def client(self) -> Any:
        return self.durable.client

    def start_worker(self, n: int) -> WorkerProcess:
        worker = WorkerProcess("schedule_app:app", f"s{n}-{uuid.uuid4().hex[:6]}@e2e",
                               env=subprocess_env(self.env, [E2E_DIR, TESTS_DIR]), cwd=E2E_DIR,
                               log_path=self.tmp / f"worker{n}.log")
        self.workers.append(worker)
        return worker

    def wait(self, instance_id: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        return wait_until(f"{instance_id} completed", lambda: _completed(self, instance_id),
                          deadline, self.live(), interval=0.1)

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc.returncode is None]


def _completed(cluster: Cluster, instance_id: str) -> Any:
    state = cluster.client.get_orchestration_state(instance_id)
    return state if state is not None and state.runtime_status.is_terminal else None


@contextlib.contextmanager
def _backend(backend: str, tmp: Path) -> Iterator[tuple[str, dict[str, Any], str]]:
    if backend == "sqlite-filesystem":
        folder = tmp / "broker"
        (folder / "control").mkdir(parents=True)
        yield "filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder),
                                "control_folder": str(folder / "control"),
                                "polling_interval": 0.02}, f"sqlite:///{tmp / 'store.sqlite3'}"
        return
    require("redis")
    with database("postgresql", "durable_sched") as url:
        yield f"{REDIS_URL}/10", {}, url


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp(f"sched-{request.param}")
    with _backend(request.param, tmp) as (broker_url, options, store_url):
        queue = f"durable-sched-{uuid.uuid4().hex[:8]}"
        _, durable = sa.make_app(broker_url, options, store_url, queue, name="e2e-sched-client")
        durable.store.create_schema()
        cluster = Cluster(durable, env_config(broker_url, options, store_url, queue), tmp)
        try:
            cluster.start_worker(1)
            cluster.start_worker(2)
            with logs_on_failure(cluster.workers):
                iid = cluster.client.schedule_new_orchestration(sa.tick, input="ready")
                assert cluster.wait(iid, timeout=60).runtime_status is COMPLETED
            yield cluster
        finally:
            stop_all(cluster.workers)
            durable.store.dispose()
            delete_queue(broker_url, queue, options)


def _schedule_window(cluster: Cluster, schedule_id: str, ticks: int) -> list[str]:
    """A 1-second schedule of ``ticks`` ticks from the next whole second + 1 s; returns the
    instance ids its ticks must start. Overlap "allow" and a catch-up window: a tick that comes
    late (a sweep delayed by a killed worker, a busy machine) still runs once, on its own."""
    now = datetime.now(timezone.utc)
    first = now.replace(microsecond=0) + timedelta(seconds=2)
    last = first + timedelta(seconds=ticks - 1)
    cluster.client.create_schedule(schedule_id, sa.tick, input=schedule_id, interval=1,
                                   start_at=first, end_at=last, overlap="allow",
                                   catchup_window=timedelta(seconds=30))
    return [f"{schedule_id}@{(first + timedelta(seconds=k)):%Y-%m-%dT%H:%M:%S}Z"
            for k in range(ticks)]


def _runs_of(cluster: Cluster, schedule_id: str) -> list[str]:
    page = cluster.client.query_orchestrations(name="sched.e2e.tick", limit=1000)
    return sorted(s.instance_id for s in page.items if s.instance_id.startswith(schedule_id))


def _check_ticks(cluster: Cluster, schedule_id: str, expected: list[str],
                 lateness: timedelta = LATENESS) -> None:
    """Every tick started exactly one instance, near its time, and it completed."""
    deadline = time.monotonic() + 40
    def progress() -> str:
        states = {i: cluster.client.get_orchestration_state(i) for i in _runs_of(cluster,
                                                                                 schedule_id)}
        return (f"{len(expected)} runs of {schedule_id} (have: "
                f"{ {i: s.runtime_status.value for i, s in states.items() if s} })")

    wait_until(progress,
               lambda: len(_runs_of(cluster, schedule_id)) >= len(expected)
               and all(_completed(cluster, i) for i in expected), deadline, cluster.live(),
               interval=0.2)
    assert _runs_of(cluster, schedule_id) == expected  # no duplicate, no gap, nothing else
    schedule = cluster.client.get_schedule(schedule_id)
    assert schedule.runs == len(expected) and schedule.missed == 0
    assert schedule.next_run_at is None  # past end_at
    for instance_id in expected:
        tick = datetime.strptime(instance_id.split("@")[1], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc)
        started = cluster.client.get_orchestration_history(instance_id)[0].timestamp
        assert tick <= started <= tick + lateness, (instance_id, started)
        assert cluster.client.get_orchestration_state(instance_id).output == schedule_id


def test_every_tick_starts_exactly_one_instance(cluster: Cluster) -> None:
    with logs_on_failure(cluster.workers):
        expected = _schedule_window(cluster, f"every-second-{uuid.uuid4().hex[:6]}", 8)
        _check_ticks(cluster, expected[0].split("@")[0], expected)


def test_pause_resume_trigger_delete(cluster: Cluster) -> None:
    client = cluster.client
    schedule_id = f"managed-{uuid.uuid4().hex[:6]}"
    with logs_on_failure(cluster.workers):
        client.create_schedule(schedule_id, sa.tick, input="m", interval=1)
        deadline = time.monotonic() + 20
        wait_until("a first run", lambda: _runs_of(cluster, schedule_id), deadline,
                   cluster.live())
        client.pause_schedule(schedule_id)
        time.sleep(0.5)  # a sweep that held the schedule before the pause commits its tick
        paused_runs = _runs_of(cluster, schedule_id)
        time.sleep(2.0)  # two ticks' time: nothing may start while paused
        assert _runs_of(cluster, schedule_id) == paused_runs
        triggered = client.trigger_schedule(schedule_id)
        assert cluster.wait(triggered).runtime_status is COMPLETED
        resumed = client.resume_schedule(schedule_id)
        assert not resumed.paused
        wait_until("a run after resume", lambda: len(_runs_of(cluster, schedule_id))
                   >= len(paused_runs) + 2, time.monotonic() + 20, cluster.live())
        client.delete_schedule(schedule_id)
        time.sleep(0.5)  # (a sweep holding it may still commit one tick)
        final = _runs_of(cluster, schedule_id)
        time.sleep(2.0)
        assert _runs_of(cluster, schedule_id) == final and client.get_schedule(schedule_id) is None


def test_concurrency_limit_holds_across_workers(cluster: Cluster) -> None:
    client, store = cluster.client, cluster.durable.store
    prefix = f"lim-{uuid.uuid4().hex[:6]}"
    ids = [client.schedule_new_orchestration(sa.limited, input=0.3, instance_id=f"{prefix}-{i:02d}")
           for i in range(20)]
    most, samples = 0, 0
    with logs_on_failure(cluster.workers):
        deadline = time.monotonic() + 60
        while True:
            rows = {r.instance_id: r.status for r in store.query_instances(
                name="sched.e2e.limited", limit=1000) if r.instance_id.startswith(prefix)}
            samples += 1
            statuses = [rows[i] for i in ids]
            running = sum(s is OrchestrationStatus.RUNNING for s in statuses)
            assert running <= sa.LIMIT, statuses
            most = max(most, running)
            started = [s is not OrchestrationStatus.PENDING for s in statuses]
            assert started == sorted(started, reverse=True), f"not FIFO: {statuses}"
            if all(s is COMPLETED for s in statuses):
                break
            assert time.monotonic() < deadline, statuses
            for worker in cluster.workers:
                worker.check_alive()
            time.sleep(0.02)
    assert most == sa.LIMIT and samples > 20


def test_killing_a_worker_loses_and_doubles_no_tick(cluster: Cluster) -> None:
    schedule_id = f"killed-{uuid.uuid4().hex[:6]}"
    with logs_on_failure(cluster.workers):
        expected = _schedule_window(cluster, schedule_id, 8)
        wait_until("three runs", lambda: len(_runs_of(cluster, schedule_id)) >= 3,
                   time.monotonic() + 20, cluster.live(), interval=0.05)
        victim = cluster.workers[0]
        os.killpg(victim.proc.pid, signal.SIGKILL)  # the process group this test started
        victim.proc.wait(timeout=10)
        cluster.start_worker(3)  # a restart, while the other worker's sweeper goes on
        # (the survivor's sweeper may stall for seconds while the sweep asks the workers which
        # activities they hold, the dead one's included: its late ticks then catch up)
        _check_ticks(cluster, schedule_id, expected, lateness=timedelta(seconds=15))
