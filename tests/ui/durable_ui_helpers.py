"""Helpers of the dashboard tests: the setup they share, bulk inserts, HTTP requests.

(A module of its own: ``from conftest import ...`` would find whichever conftest was imported
last when several test folders run together.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import workers
from services import REDIS_URL

from celery_durable import Durable
from celery_durable.store import NewInstance
from celery_durable.store.records import to_db_time
from celery_durable.store.schema import instances

UI_DIR = Path(__file__).resolve().parent
ROOT = UI_DIR.parents[1]
CHROMIUM = "/usr/bin/chromium"
#: Redis db of these tests (events and queues of other tests live in other dbs)
BROKER_URL = f"{REDIS_URL}/12"
USER = "admin"
FLOWER_URL = "http://flower.example:5555"
BULK_INSTANCES = 10_000
BULK_NAMES = ("ui_e2e.bulk_import", "ui_e2e.bulk_report")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class Setup:
    base_url: str
    password: str
    durable: Durable
    worker: workers.WorkerProcess
    ui: workers.CeleryProcess
    bulk_counts: dict[str, int]

    @property
    def processes(self) -> list[workers.CeleryProcess]:
        return [self.worker, self.ui]

    def request(self, method: str, path: str, body: Any = None, *,
                auth: tuple[str, str] | None | bool = True,
                content_type: str = "application/json") -> tuple[int, Any]:
        """One HTTP request to the dashboard: (status, JSON body or text)."""
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if auth is True:
            auth = (USER, self.password)
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        return workers.wait_until(what, check, time.monotonic() + timeout, self.processes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bulk_insert(durable: Durable, count: int) -> dict[str, int]:
    """Insert ``count`` instances of the `BULK_NAMES` orchestrators in one statement batch,
    created over the ten days before the last hour, in every status; return the count per
    status."""
    rng = random.Random(9)
    statuses = ["COMPLETED"] * 6 + ["FAILED", "TERMINATED", "RUNNING", "SUSPENDED", "PENDING"]
    start = datetime.now(timezone.utc) - timedelta(days=10, hours=1)
    rows, counts = [], dict.fromkeys(set(statuses), 0)
    for i in range(count):
        created = start + timedelta(seconds=rng.uniform(0, 10 * 86400))
        status = statuses[i % len(statuses)]
        counts[status] += 1
        row = NewInstance(instance_id=f"bulk-{i:05d}-{uuid.uuid4().hex[:8]}",
                          name=BULK_NAMES[i % 2], input={"batch": i},
                          created_at=created).to_row()
        ended = created + timedelta(seconds=rng.uniform(1, 600))
        terminal = status in ("COMPLETED", "FAILED", "TERMINATED")
        row.update(status=status, updated_at=to_db_time(ended if terminal else created),
                   completed_at=to_db_time(ended) if terminal else None,
                   output=json.dumps({"rows": i}) if status == "COMPLETED" else None)
        rows.append(row)
    durable.store.create_schema()
    with durable.store.engine.begin() as conn:
        conn.execute(sa.insert(instances), rows)
    return counts



@contextlib.contextmanager
def no_change(setup: Setup, instance_id: str) -> Iterator[None]:
    """Assert that the block leaves the instance's row, history and inbox as they were."""
    store = setup.durable.store

    def snapshot() -> tuple[Any, ...]:
        record = store.get_instance(instance_id)
        history = store.get_history(instance_id) if record else None
        return record, history, store.inbox_size(instance_id)

    before = snapshot()
    yield
    time.sleep(0.3)  # anything the block set off would have reached the store by now
    assert snapshot() == before
