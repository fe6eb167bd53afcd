"""Real ``celery worker`` subprocesses (``-A edge_app``) on PostgreSQL + Redis for the
bad-input, race and timer tests, their client, and a dump of every store table."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import edge_workflows as ew
from edge_app import env_config, make_app
from services import REDIS_URL, database, require
from sqlalchemy import select
from workers import (
    WorkerProcess,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, DurableClient, OrchestrationState, OrchestrationStatus
from celery_durable.store import Store
from celery_durable.store.schema import metadata

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
#: this helper's Redis database (one per test area, so runs never collide)
REDIS_DB = 14
READY_TIMEOUT = 60.0


def dump(store: Store) -> dict[str, list[str]]:
    """Every row of every store table, as sorted text: equal dumps mean nothing was written."""
    with store.engine.connect() as conn:
        return {table.name: sorted(repr(tuple(row)) for row in conn.execute(select(table)))
                for table in metadata.sorted_tables}


@dataclass
class EdgeCluster:
    """The client side (app, Durable) of one PostgreSQL + Redis setup and its workers."""

    app: Any
    durable: Durable
    queue: str
    env: dict[str, str]
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    started: int = 0

    @property
    def client(self) -> DurableClient:
        return self.durable.client

    def start_worker(self, concurrency: int = 2) -> WorkerProcess:
        self.started += 1
        node = f"edge{self.started}-{self.queue}@reliability"
        worker = WorkerProcess("edge_app:app", node, concurrency=concurrency,
                               env=subprocess_env(self.env, [HERE, TESTS]), cwd=HERE,
                               log_path=self.tmp / f"worker{self.started}.log")
        self.workers.append(worker)
        return worker

    def wait_ready(self, workers: list[WorkerProcess]) -> None:
        """Every one of ``workers`` answers a ping; an orchestration runs through them."""
        deadline = time.monotonic() + READY_TIMEOUT
        nodes = {w.node for w in workers}
        answered: set[str] = set()

        def all_answered() -> bool:
            replies = self.app.control.ping(destination=sorted(nodes), timeout=0.5)
            answered.update(node for reply in replies or [] for node in reply)
            return answered == nodes

        with self.logs_on_failure():
            wait_until(lambda: f"a ping answered by {sorted(nodes - answered)}", all_answered,
                       deadline, self.workers, interval=0)
            state = self.wait(self.client.schedule_new_orchestration(ew.hello, input="ready"))
            assert state.runtime_status is OrchestrationStatus.COMPLETED, state

    def stop_workers(self) -> None:
        stop_all(self.workers)

    def wait(self, instance_id: str, timeout: float = 30) -> OrchestrationState:
        """Wait for the instance to end, checking every second that the workers are alive."""
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

    def logs_on_failure(self) -> contextlib.AbstractContextManager[None]:
        return logs_on_failure(self.workers)

    def logs(self) -> str:
        return "\n".join(worker.log() for worker in self.workers)


@contextlib.contextmanager
def edge_cluster(tmp: Path, *, workers: int = 1, conf: dict[str, Any] | None = None,
                 password: str | None = None,
                 env: dict[str, str] | None = None) -> Iterator[EdgeCluster]:
    """A fresh PostgreSQL database and Redis queue with ``workers`` ready workers; ``password``
    goes into the store URL (the local server trusts local connections and ignores it);
    ``env``: more environment variables for the workers."""
    require("redis")
    conf = {"durable_sweep_interval": 1.0, "durable_recovery_grace": 5.0, **(conf or {})}
    with database("postgresql", "durable_edge") as url:
        if password is not None:
            url = url.replace("postgres@", f"postgres:{password}@", 1)
        broker = f"{REDIS_URL}/{REDIS_DB}"
        queue = f"durable-edge-{uuid.uuid4().hex[:8]}"
        app, durable = make_app(broker, url, queue, conf, name="edge-client")
        cluster = EdgeCluster(app, durable, queue,
                              {**env_config(broker, url, queue, conf), **(env or {})}, tmp)
        try:
            started = [cluster.start_worker() for _ in range(workers)]
            cluster.wait_ready(started)
            yield cluster
        finally:
            cluster.stop_workers()
            durable.store.dispose()
            delete_queue(broker, queue)
