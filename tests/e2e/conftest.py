"""End-to-end fixtures: a real Celery worker, broker and database per backend of the matrix.

Each backend (store + broker) gets one Celery app, one ``Durable`` and one embedded worker (a
thread pool of 4 in this process, as celery.contrib.testing runs it) for the whole session; each
session uses its own database, Redis db/queue and RabbitMQ queue, so runs never collide.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import workflows  # noqa: F401  (registers the orchestrators and activities)
from celery import Celery
from celery.contrib.testing.worker import start_worker
from services import RABBITMQ_URL, REDIS_URL, database, require

from celery_durable import Durable, DurableClient

BACKENDS = ["sqlite-filesystem", "postgresql-redis", "postgresql-rabbitmq", "mariadb-redis"]


@dataclass
class Harness:
    name: str
    app: Celery
    durable: Durable
    worker: Any

    @property
    def client(self) -> DurableClient:
        return self.durable.client

    def run(self, orchestrator: Any, input: Any = None, timeout: float = 60) -> Any:
        """Schedule, wait for completion, return the final state."""
        instance_id = self.client.schedule_new_orchestration(orchestrator, input=input)
        return self.client.wait_for_orchestration_completion(instance_id, timeout=timeout)


@contextlib.contextmanager
def _broker(kind: str, tmp: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if kind == "filesystem":
        folder = tmp / "broker"
        (folder / "control").mkdir(parents=True)
        yield "filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder),
                                "control_folder": str(folder / "control"),
                                "polling_interval": 0.01}
    elif kind == "redis":
        require("redis")
        yield f"{REDIS_URL}/3", {}
    else:
        require("rabbitmq")
        yield RABBITMQ_URL, {}


@contextlib.contextmanager
def _store(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'store.sqlite3'}"
    else:
        with database(kind, "durable_e2e") as url:
            yield url


def make_app(backend: str, tmp: Path, stack: contextlib.ExitStack,
             **conf: Any) -> tuple[Celery, Durable]:
    store_kind, broker_kind = backend.split("-")
    broker_url, options = stack.enter_context(_broker(broker_kind, tmp))
    store_url = stack.enter_context(_store(store_kind, tmp))
    app = Celery(f"e2e-{backend}", broker=broker_url, set_as_current=False)
    queue = f"durable-e2e-{uuid.uuid4().hex[:8]}"
    app.conf.update(
        broker_transport_options=options, task_default_queue=queue,
        task_acks_late=True, worker_prefetch_multiplier=1, result_backend=None,
        task_ignore_result=True, broker_connection_retry_on_startup=True,
        durable_sweep_interval=0.5, durable_recovery_grace=2.0, **conf)
    durable = Durable(app, store_url=store_url)
    stack.callback(durable.store.dispose)
    return app, durable


@pytest.fixture(scope="session", params=BACKENDS)
def harness(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    backend = request.param
    with contextlib.ExitStack() as stack:
        tmp = tmp_path_factory.mktemp(backend)
        app, durable = make_app(backend, tmp, stack, durable_timer_horizon=2.0)
        app.set_current()
        worker = stack.enter_context(start_worker(
            app, pool="threads", concurrency=4, perform_ping_check=False,
            loglevel="WARNING", shutdown_timeout=30,
            queues=[app.conf.task_default_queue, workflows.PAYMENTS_QUEUE]))
        yield Harness(backend, app, durable, worker)
