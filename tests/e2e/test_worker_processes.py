"""Orchestrations on real ``celery worker --pool prefork`` subprocesses (not an embedded worker).

Each backend (PostgreSQL + Redis, PostgreSQL + RabbitMQ, SQLite + the filesystem broker, the
embedded default) gets ``celery -A worker_app:app worker --pool prefork --concurrency 2`` started
with ``sys.executable -m celery``: two forked pool processes plus the worker's main process (which
runs the sweeper) share the store, and this test process is a fourth client of it. Then: the
replay work of a fan-out across the pool processes' separate state caches, and two such workers
on one PostgreSQL + Redis setup running 30 mixed orchestrations at once.

Every worker's log goes to a temporary file; a failing test prints it.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import workflows as wf
from services import RABBITMQ_URL, REDIS_URL, database, require
from worker_app import ENV_COUNTERS, env_config, make_app
from workers import (
    WorkerProcess,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, DurableClient, OrchestrationStatus

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
TESTS_DIR = E2E_DIR.parent
COMPLETED = OrchestrationStatus.COMPLETED
SCHEDULING = {"TaskScheduled": "task", "TimerCreated": "timer",
              "SubOrchestrationCreated": "sub-orchestration"}
COMPLETIONS = {"TaskCompleted", "TaskFailed", "TimerFired", "SubOrchestrationCompleted",
               "SubOrchestrationFailed"}
#: what must never appear in a worker's log while these (failure-free) workloads run
BAD_LOG_MARKERS = ("database is locked", "Traceback", "JSONDecodeError", "WorkerLostError",
                   "Unrecoverable error", "deadlock")
READY_TIMEOUT = 60.0


def _start_worker(env: dict[str, str], log_path: Path, node: str) -> WorkerProcess:
    """``celery -A worker_app:app worker --pool prefork --concurrency 2`` named ``node``."""
    return WorkerProcess("worker_app:app", node, env=subprocess_env(env, [E2E_DIR, TESTS_DIR]),
                         cwd=E2E_DIR, log_path=log_path)


@dataclass
class Cluster:
    """The client side (app, Durable) and the worker subprocesses of one backend."""

    backend: str
    broker_url: str
    queue: str
    app: Any
    durable: Durable
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def client(self) -> DurableClient:
        return self.durable.client

    def wait(self, instance_id: str, timeout: float = 30) -> Any:
        """Wait for completion, checking every few seconds that the workers are alive."""
        deadline = time.monotonic() + timeout
        while True:
            for worker in self.workers:
                worker.check_alive()
            remaining = deadline - time.monotonic()
            try:
                return self.client.wait_for_orchestration_completion(
                    instance_id, timeout=max(0.1, min(2.0, remaining)))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise

    def run(self, orchestrator: Any, input: Any = None, timeout: float = 30) -> Any:
        return self.wait(self.client.schedule_new_orchestration(orchestrator, input=input),
                         timeout)

    def log_on_failure(self) -> contextlib.AbstractContextManager[None]:
        """Print every worker's log (shown in the failing test's report) if the block fails."""
        return logs_on_failure(self.workers)

    def logs(self) -> str:
        return "\n".join(worker.log() for worker in self.workers)


@contextlib.contextmanager
def _backend(backend: str, tmp: Path) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(broker URL, transport options, store URL) of a fresh setup of ``backend``."""
    store_kind, broker_kind = backend.split("-")
    if broker_kind == "filesystem":
        folder = tmp / "broker"
        (folder / "control").mkdir(parents=True)
        broker, options = "filesystem://", {
            "data_folder_in": str(folder), "data_folder_out": str(folder),
            "control_folder": str(folder / "control"), "polling_interval": 0.02}
    elif broker_kind == "redis":
        require("redis")
        broker, options = f"{REDIS_URL}/4", {}
    else:
        require("rabbitmq")
        broker, options = RABBITMQ_URL, {}
    if store_kind == "sqlite":
        yield broker, options, f"sqlite:///{tmp / 'store.sqlite3'}"
    else:
        with database(store_kind, "durable_procs") as url:
            yield broker, options, url


@contextlib.contextmanager
def cluster_of(backend: str, tmp: Path, workers: int = 1,
               counters: Path | None = None) -> Iterator[Cluster]:
    """A fresh ``backend`` with ``workers`` worker subprocesses, ready; ``counters``: the folder
    where each pool process keeps its episode counters (see `worker_app`)."""
    with _backend(backend, tmp) as (broker_url, options, store_url):
        queue = f"durable-procs-{uuid.uuid4().hex[:8]}"
        app, durable = make_app(broker_url, options, store_url, queue, name="e2e-procs-client")
        env = env_config(broker_url, options, store_url, queue)
        if counters is not None:
            env[ENV_COUNTERS] = str(counters)
        cluster = Cluster(backend, broker_url, queue, app, durable)
        try:
            for i in range(workers):
                node = f"w{i + 1}-{queue}@e2e"
                cluster.workers.append(_start_worker(env, tmp / f"worker{i + 1}.log", node))
            _wait_ready(cluster)
            yield cluster
        finally:
            stop_all(cluster.workers)  # all at once: a warm shutdown takes seconds
            durable.store.dispose()
            delete_queue(broker_url, queue, options)


def _wait_ready(cluster: Cluster) -> None:
    """Ready when every worker answers a ping (brokers with broadcast) and an orchestration
    has run end to end through them."""
    deadline = time.monotonic() + READY_TIMEOUT
    with cluster.log_on_failure():
        if not cluster.broker_url.startswith("filesystem"):
            nodes = {w.node for w in cluster.workers}
            answered: set[str] = set()

            def all_answered() -> bool:
                replies = cluster.app.control.ping(destination=sorted(nodes), timeout=0.5)
                answered.update(node for reply in replies or [] for node in reply)
                return answered == nodes

            wait_until(lambda: f"a ping answered by workers {sorted(nodes - answered)} "
                               f"(within {READY_TIMEOUT}s)",
                       all_answered, deadline, cluster.workers, interval=0)
        state = cluster.run(wf.sequence, 1, timeout=max(1.0, deadline - time.monotonic()))
        assert state.runtime_status is COMPLETED, state


def assert_each_task_completed_once(cluster: Cluster, instance_id: str) -> list[Any]:
    """Every task id the instance scheduled has exactly one completion event, and no completion
    names a task id it did not schedule; returns the history."""
    history = cluster.client.get_orchestration_history(instance_id)
    scheduled = Counter(e.task_id for e in history if e.kind in SCHEDULING)
    completed = Counter(e.task_id for e in history if e.kind in COMPLETIONS)
    assert all(n == 1 for n in scheduled.values()), f"scheduled twice: {scheduled}"
    assert completed == scheduled, (
        f"completions per task id differ from what was scheduled: "
        f"{ {t: n for t, n in completed.items() if n != 1 or t not in scheduled} }, "
        f"never completed: {sorted(set(scheduled) - set(completed))}")
    assert [e.seq for e in history] == list(range(len(history)))
    return history


# -- one prefork worker per backend ------------------------------------------------------------

BACKENDS = ["postgresql-redis", "postgresql-rabbitmq", "sqlite-filesystem"]


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp(f"procs-{request.param}")
    with cluster_of(request.param, tmp) as c:
        yield c


def test_sequence_of_20(cluster: Cluster) -> None:
    with cluster.log_on_failure():
        state = cluster.run(wf.sequence, 20)
        assert state.runtime_status is COMPLETED
        assert state.output == sum(range(20))
        history = assert_each_task_completed_once(cluster, state.instance_id)
        assert [e.kind for e in history].count("TaskCompleted") == 20


def test_fan_out_fan_in_of_200(cluster: Cluster) -> None:
    with cluster.log_on_failure():
        state = cluster.run(wf.fan_out, 200, timeout=40)
        assert state.runtime_status is COMPLETED
        assert state.output == sum(range(200))
        history = assert_each_task_completed_once(cluster, state.instance_id)
        assert sum(e.kind == "TaskScheduled" for e in history) == 200


def test_sub_orchestration_fan_out_of_10(cluster: Cluster) -> None:
    with cluster.log_on_failure():
        state = cluster.run(wf.parent, 10)
        assert state.runtime_status is COMPLETED
        assert state.output == [2 * i for i in range(10)]
        history = assert_each_task_completed_once(cluster, state.instance_id)
        assert sum(e.kind == "SubOrchestrationCompleted" for e in history) == 10
        for i in range(10):
            child = cluster.client.get_orchestration_state(f"{state.instance_id}:{i}")
            assert child is not None and child.runtime_status is COMPLETED
            assert child.parent_instance_id == state.instance_id
            assert_each_task_completed_once(cluster, child.instance_id)


def test_timer_of_one_second(cluster: Cluster) -> None:
    with cluster.log_on_failure():
        state = cluster.run(wf.timer, 1.0)
        assert state.runtime_status is COMPLETED
        history = assert_each_task_completed_once(cluster, state.instance_id)
        created = next(e for e in history if e.kind == "TimerCreated")
        fired = next(e for e in history if e.kind == "TimerFired")
        fire_at = datetime.fromisoformat(created.data["fire_at"])
        assert (fire_at - history[0].timestamp).total_seconds() == pytest.approx(1.0, abs=0.01)
        assert fired.timestamp >= fire_at
        assert datetime.fromisoformat(state.output) >= fire_at


def test_external_event(cluster: Cluster) -> None:
    with cluster.log_on_failure():
        client = cluster.client
        iid = client.schedule_new_orchestration(wf.wait_event, input=["early", "late"])
        client.raise_orchestration_event(iid, "EARLY", data={"n": 1})  # maybe before it starts
        client.wait_for_orchestration_start(iid, timeout=30)
        client.raise_orchestration_event(iid, "late", data=[2])
        state = cluster.wait(iid)
        assert state.runtime_status is COMPLETED
        assert state.output == [{"n": 1}, [2]]
        history = assert_each_task_completed_once(cluster, iid)
        assert [e.name.lower() for e in history if e.kind == "EventRaised"] == ["early", "late"]


def test_worker_log_is_clean(cluster: Cluster) -> None:
    """Several processes shared the store (SQLite: its file) and nothing failed on the way."""
    with cluster.log_on_failure():
        for worker in cluster.workers:
            worker.check_alive()
        logs = cluster.logs()
        assert " ready." in logs
        found = [marker for marker in BAD_LOG_MARKERS if marker in logs]
        assert not found, f"worker log has {found}"


# -- replay work across the pool processes of one worker ---------------------------------------

def test_prefork_fan_out_replay_work_is_linear(tmp_path: Path) -> None:
    """A fan-out of N on one prefork worker (2 pool processes, each with its own state cache):
    every process replays each history event at most once (a cached state behind the store
    catches up on the events it missed), plus the N completions fed: O(N), not O(N^2)."""
    n = 200
    counters = tmp_path / "counters"
    counters.mkdir()
    with cluster_of("postgresql-redis", tmp_path, counters=counters) as c, c.log_on_failure():
        state = c.run(wf.fan_out, n, timeout=40)
        assert state.runtime_status is COMPLETED and state.output == sum(range(n))
        history = assert_each_task_completed_once(c, state.instance_id)
    # each pool process's counters after its last task (the worker has stopped)
    per_process = [json.loads(path.read_text()) for path in counters.glob("*.json")]
    assert 1 <= len(per_process) <= 2, per_process
    events = sum(p["events_processed"] for p in per_process)
    episodes = sum(p["episodes"] for p in per_process)
    misses = sum(p["misses"] for p in per_process)
    print(f"prefork fan-out of {n}: {events} events processed in {episodes} episodes "
          f"({misses} cache misses) by {len(per_process)} pool processes; history "
          f"{len(history)} events")
    readiness = 10  # the readiness check's one-step sequence, run first
    bound = len(per_process) * len(history) + n + readiness
    assert events <= bound, (
        f"{events} events processed for a fan-out of {n} ({events / n:.1f} per activity), "
        f"more than {bound}: pool processes replay history they have seen")


# -- two prefork workers on one PostgreSQL + Redis setup ---------------------------------------

def test_two_workers_run_30_mixed_orchestrations(tmp_path: Path) -> None:
    with cluster_of("postgresql-redis", tmp_path, workers=2) as c, c.log_on_failure():
        client = c.client
        kinds = ["sequence", "fan_out", "parent", "timer", "event"]
        started: list[tuple[str, str]] = []
        for i in range(30):
            kind = kinds[i % len(kinds)]
            if kind == "sequence":
                iid = client.schedule_new_orchestration(wf.sequence, input=5 + i % 3)
            elif kind == "fan_out":
                iid = client.schedule_new_orchestration(wf.fan_out, input=20 + i)
            elif kind == "parent":
                iid = client.schedule_new_orchestration(wf.parent, input=3)
            elif kind == "timer":
                iid = client.schedule_new_orchestration(wf.timer, input=0.5)
            else:
                iid = client.schedule_new_orchestration(wf.wait_event, input=["a", "b"])
                client.raise_orchestration_event(iid, "a", data=i)
                client.raise_orchestration_event(iid, "b", data=-i)
            started.append((kind, iid))
        for i, (kind, iid) in enumerate(started):
            state = c.wait(iid, timeout=40)
            assert state.runtime_status is COMPLETED, (kind, state)
            expected = {"sequence": sum(range(5 + i % 3)), "fan_out": sum(range(20 + i)),
                        "parent": [0, 2, 4], "event": [i, -i]}
            if kind in expected:
                assert state.output == expected[kind], kind
            assert_each_task_completed_once(c, iid)
            if kind == "parent":
                for child in range(3):
                    assert_each_task_completed_once(c, f"{iid}:{child}")
        for worker in c.workers:
            log = worker.log()
            assert "succeeded in" in log, f"worker {worker.node} ran no task"
            found = [marker for marker in BAD_LOG_MARKERS if marker in log]
            assert not found, f"worker {worker.node} log has {found}"
