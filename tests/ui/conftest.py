"""Dashboard fixtures: a real store, worker, ``celery durable ui`` and headless Chromium.

One session-wide setup: a fresh PostgreSQL database holding 10,000 bulk-inserted instances (the
dashboard must stay fast with them), a unique queue on Redis db 12, a ``celery worker``
subprocess and a ``celery -A durable_ui_app durable ui --basic-auth ...`` subprocess, both
loading `durable_ui_app`; the test process has its own client on the same store and broker.
The browser is Debian's Chromium (``/usr/bin/chromium``) driven by Playwright; no browser is
downloaded. Each subprocess's log goes to a temporary file; a failing test prints them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
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

import durable_ui_app as ua
import pytest
import sqlalchemy as sa
import workers
from services import REDIS_URL, database, require

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


def _free_port() -> int:
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


@pytest.fixture(scope="session")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require("redis")
    tmp = tmp_path_factory.mktemp("ui")
    with database("postgresql", "durable_ui") as store_url:
        queue = f"durable-ui-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        port = _free_port()
        _app, durable = ua.make_app(BROKER_URL, store_url, queue, name="durable-ui-client")
        started = time.monotonic()
        counts = bulk_insert(durable, BULK_INSTANCES)
        print(f"\n{BULK_INSTANCES} instances inserted in {time.monotonic() - started:.2f}s")
        env = workers.subprocess_env(ua.env_config(BROKER_URL, store_url, queue),
                                     [UI_DIR, UI_DIR.parent])
        app = "durable_ui_app:app"
        processes: list[workers.CeleryProcess] = []
        try:
            worker = workers.WorkerProcess(app, f"{queue}@ui-test", pool="threads",
                                           concurrency=4, name="worker", env=env, cwd=tmp,
                                           log_path=tmp / "worker.log",
                                           stop_timeout=STOP_TIMEOUT)
            processes.append(worker)
            ui = workers.CeleryProcess("dashboard", app, [
                "durable", "ui", "--port", str(port), "--basic-auth", f"{USER}:{password}",
                "--flower-url", FLOWER_URL, "--refresh", "1"], env=env, cwd=tmp,
                log_path=tmp / "ui.log", stop_timeout=STOP_TIMEOUT)
            processes.append(ui)
            s = Setup(f"http://127.0.0.1:{port}", password, durable, worker, ui, counts)
            with workers.logs_on_failure(processes):
                workers.wait_until("the dashboard answers", lambda: s.request(
                    "GET", "/api/config")[0] == 200, started + READY_TIMEOUT, processes,
                    retry_on=(urllib.error.URLError, ConnectionError, TimeoutError))
            yield s
        finally:
            workers.stop_all(processes)
            durable.store.dispose()
            workers.delete_queue(BROKER_URL, queue)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, setup: Setup) -> Iterator[Any]:
    """A fresh page, logged in with the dashboard's basic-auth credentials."""
    context = browser.new_context(base_url=setup.base_url,
                                  viewport={"width": 1280, "height": 900},
                                  http_credentials={"username": USER,
                                                    "password": setup.password})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and not msg.text.startswith(
        "Failed to load resource") and errors.append(f"console: {msg.text}"))
    with workers.logs_on_failure(setup.processes):
        try:
            yield page
        finally:
            print("\n".join(errors))
        assert not errors, errors  # a script error fails the test
    context.close()


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
