"""The cluster of the entity tests (a module of its own: ``from conftest import ...`` finds
whichever conftest was imported last when several test folders run together): one worker
(prefork, 2 processes) per backend of the matrix, for the module: the embedded default (SQLite + ``filesystem://``),
PostgreSQL + Redis (db 5) and PostgreSQL + RabbitMQ."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from services import RABBITMQ_URL, REDIS_URL, database, require  # noqa: E402
from workers import (  # noqa: E402
    WorkerProcess,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, DurableClient  # noqa: E402

BACKENDS = ["sqlite-filesystem", "postgresql-redis", "postgresql-rabbitmq"]
REDIS_DB = 5


@dataclass
class Cluster:
    backend: str
    env: dict[str, str]
    durable: Durable
    workers: list[WorkerProcess]
    tmp: Path
    #: workers a test killed (their logs are printed on failure too)
    dead: list[WorkerProcess] = field(default_factory=list)

    @property
    def client(self) -> DurableClient:
        return self.durable.client

    def start_worker(self, node: str) -> WorkerProcess:
        worker = WorkerProcess("entity_app:app", f"{node}-{uuid.uuid4().hex[:6]}",
                               env=self.env, cwd=HERE, log_path=self.tmp / f"{node}.log")
        self.workers.append(worker)
        return worker

    def wait(self, what: str, check: Any, timeout: float = 90) -> Any:
        with logs_on_failure([*self.dead, *self.workers]):
            return wait_until(what, check, time.monotonic() + timeout,
                              [w for w in self.workers if w.log_path.exists()], interval=0.2)

    def complete(self, instance_ids: list[str], timeout: float = 120) -> list[Any]:
        with logs_on_failure([*self.dead, *self.workers]):
            return [self.client.wait_for_orchestration_completion(i, timeout=timeout)
                    for i in instance_ids]


@contextlib.contextmanager
def _cluster(backend: str, tmp: Path) -> Iterator[Cluster]:
    store_kind, broker_kind = backend.split("-")
    queue = f"durable-entities-{uuid.uuid4().hex[:8]}"
    extra = {"ENT_QUEUE": queue, "ENT_MARKS": str(tmp / "marks.txt")}
    with contextlib.ExitStack() as stack:
        if store_kind == "sqlite":
            store_url = f"sqlite:///{tmp / 'store.sqlite3'}"
        else:
            store_url = stack.enter_context(database(store_kind, "durable_ent"))
        if broker_kind == "filesystem":
            folder = tmp / "broker"
            (folder / "control").mkdir(parents=True)
            broker = "filesystem://"
            extra["ENT_BROKER_FOLDER"] = str(folder)
        elif broker_kind == "redis":
            require("redis")
            broker = f"{REDIS_URL}/{REDIS_DB}"
        else:
            require("rabbitmq")
            broker = RABBITMQ_URL
        extra.update(ENT_BROKER_URL=broker, ENT_STORE_URL=store_url)
        env = subprocess_env(extra, [HERE, HERE.parent])
        # the test process builds the same app (client side) from the same settings
        import entity_app

        saved = dict(os.environ)
        os.environ.update(extra)
        try:
            app, durable = entity_app.build()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        cluster = Cluster(backend, env, durable, [], tmp)  # type: ignore[arg-type]
        try:
            cluster.start_worker("ent")
            yield cluster
        finally:
            stop_all(cluster.workers)
            durable.store.dispose()
            delete_queue(broker, queue)
