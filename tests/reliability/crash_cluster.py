"""Real ``celery worker`` subprocesses (``-A crash_points``, a thread pool) on SQLite + kombu's
filesystem broker (the embedded default) or PostgreSQL + Redis (Celery's default settings, so
a killed worker's unacknowledged message waits for Redis' 1-hour visibility_timeout)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crash_points import ENV_MARKER, ENV_POINT, env_config, make_app
from services import REDIS_URL, database, require
from workers import (
    WorkerProcess,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, DurableClient, OrchestrationState
from celery_durable.engine import history as h

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
BACKENDS = ["sqlite-filesystem", "postgresql-redis"]
#: this helper's Redis database (one per test area, so runs never collide)
REDIS_DB = 13
READY_TIMEOUT = 60.0
#: short bounds, so that a crash is recovered within seconds
FAST: dict[str, Any] = {"durable_sweep_interval": 0.5, "durable_recovery_grace": 2.0,
                        "durable_activity_redispatch_after": 1.0}


@dataclass
class CrashCluster:
    """The client side (app, Durable) of one backend and the workers started on it."""

    app: Any
    durable: Durable
    queue: str
    env: dict[str, str]
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def client(self) -> DurableClient:
        return self.durable.client

    def start_worker(self, point: str | None = None, marker: Path | None = None,
                     pool: str = "threads", concurrency: int = 2) -> WorkerProcess:
        """A worker armed with crash ``point`` (a thread pool by default: a crash ends the whole
        worker)."""
        env = dict(self.env)
        if point is not None:
            assert marker is not None
            env.update({ENV_POINT: point, ENV_MARKER: str(marker)})
        n = len(self.workers) + 1
        worker = WorkerProcess("crash_points:app", f"crash{n}-{self.queue}@reliability",
                               pool=pool, concurrency=concurrency,
                               env=subprocess_env(env, [HERE, TESTS]), cwd=HERE,
                               log_path=self.tmp / f"worker{n}.log")
        self.workers.append(worker)
        return worker

    def wait_ready(self, worker: WorkerProcess) -> None:
        """The worker answers a ping (it consumes the queue from then on)."""
        def answered() -> bool:
            replies = self.app.control.ping(destination=[worker.node], timeout=0.5)
            return any(worker.node in reply for reply in replies or [])

        with self.logs_on_failure():
            wait_until(f"a ping answered by {worker.node}", answered,
                       time.monotonic() + READY_TIMEOUT, [worker], interval=0)

    def wait(self, instance_id: str, timeout: float = 60) -> OrchestrationState:
        """Wait for the instance to end, checking that the running workers are alive."""
        deadline = time.monotonic() + timeout
        while True:
            for worker in self.workers:
                if worker.proc.returncode is None:
                    worker.check_alive()
            try:
                return self.client.wait_for_orchestration_completion(
                    instance_id, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise

    def completions(self, instance_id: str) -> Counter[int]:
        """How many completion events each task id of the instance has in its history."""
        return Counter(e.task_id for e in self.client.get_orchestration_history(instance_id)
                       if e.kind in h.COMPLETION_KINDS and e.task_id is not None)

    def scheduled(self, instance_id: str) -> list[h.HistoryEvent]:
        return [e for e in self.client.get_orchestration_history(instance_id)
                if e.kind in h.SCHEDULING_KINDS]

    def logs_on_failure(self) -> contextlib.AbstractContextManager[None]:
        return logs_on_failure(self.workers)

    def logs(self) -> str:
        return "\n".join(worker.log() for worker in self.workers)


@contextlib.contextmanager
def _backend(kind: str, tmp: Path) -> Iterator[tuple[str, dict[str, Any], str]]:
    if kind == "sqlite-filesystem":
        folder = tmp / "broker"
        (folder / "control").mkdir(parents=True)
        yield ("filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder),
                                 "control_folder": str(folder / "control"),
                                 "polling_interval": 0.01},
               f"sqlite:///{tmp / 'store.sqlite3'}")
        return
    require("redis")
    with database("postgresql", "durable_crash") as url:
        yield f"{REDIS_URL}/{REDIS_DB}", {}, url


@contextlib.contextmanager
def crash_cluster(tmp: Path, backend: str,
                  conf: dict[str, Any] | None = None) -> Iterator[CrashCluster]:
    """A fresh store and queue on ``backend`` (no worker yet); ``conf`` adds to `FAST`."""
    conf = {**FAST, **(conf or {})}
    with _backend(backend, tmp) as (broker, options, store_url):
        queue = f"durable-crash-{uuid.uuid4().hex[:8]}"
        app, durable = make_app(broker, options, store_url, queue, conf, name="crash-client")
        cluster = CrashCluster(app, durable, queue,
                               env_config(broker, options, store_url, queue, conf), tmp)
        try:
            yield cluster
        finally:
            stop_all(cluster.workers)
            durable.store.dispose()
            delete_queue(broker, queue)
