"""Dashboard fixtures: a real store, worker, ``celery durable ui`` and headless Chromium.

One session-wide setup: a fresh PostgreSQL database holding 10,000 bulk-inserted instances (the
dashboard must stay fast with them), a unique queue on Redis db 12, a ``celery worker``
subprocess and a ``celery -A durable_ui_app durable ui --basic-auth ...`` subprocess, both
loading `durable_ui_app`; the test process has its own client on the same store and broker.
The browser is Debian's Chromium (``/usr/bin/chromium``) driven by Playwright; no browser is
downloaded. Each subprocess's log goes to a temporary file; a failing test prints them.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import uuid
from collections.abc import Iterator
from typing import Any

import durable_ui_app as ua
import pytest
import workers
from durable_ui_helpers import (
    BROKER_URL,
    BULK_INSTANCES,
    CHROMIUM,
    FLOWER_URL,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    UI_DIR,
    USER,
    Setup,
    bulk_insert,
    free_port,
)
from services import database, require


@pytest.fixture(scope="session")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require("redis")
    tmp = tmp_path_factory.mktemp("ui")
    with database("postgresql", "durable_ui") as store_url:
        queue = f"durable-ui-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        port = free_port()
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
