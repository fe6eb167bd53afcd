"""``durable ui --url-prefix /ops/durable``: the dashboard behind a proxy that forwards a path
(as Flower's ``--url_prefix``): every page, asset, API call and link stays under the prefix."""

from __future__ import annotations

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
    READY_TIMEOUT,
    STOP_TIMEOUT,
    UI_DIR,
    USER,
    Setup,
    free_port,
)

PREFIX = "/ops/durable"


@pytest.fixture(scope="module")
def prefixed(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A second dashboard on the session's store and broker, served under PREFIX."""
    tmp = tmp_path_factory.mktemp("ui-prefix")
    port = free_port()
    queue = setup.durable.app.conf.task_default_queue
    env = workers.subprocess_env(ua.env_config(BROKER_URL, setup.durable.store.url, queue),
                                 [UI_DIR, UI_DIR.parent])
    ui = workers.CeleryProcess("prefixed dashboard", "durable_ui_app:app", [
        "durable", "ui", "--port", str(port), "--basic-auth", f"{USER}:{setup.password}",
        "--url-prefix", PREFIX + "/"], env=env, cwd=tmp, log_path=tmp / "ui.log",
        stop_timeout=STOP_TIMEOUT)
    s = Setup(f"http://127.0.0.1:{port}", setup.password, setup.durable, setup.worker, ui,
              setup.bulk_counts)
    try:
        with workers.logs_on_failure([ui]):
            workers.wait_until("the prefixed dashboard answers", lambda: s.request(
                "GET", PREFIX + "/api/config")[0] == 200, time.monotonic() + READY_TIMEOUT,
                [ui], retry_on=(urllib.error.URLError, ConnectionError, TimeoutError))
        yield s
    finally:
        workers.stop_all([ui])


def test_everything_is_served_under_the_prefix(prefixed: Setup) -> None:
    status, html = prefixed.request("GET", PREFIX + "/")
    assert status == 200
    assert f'href="{PREFIX}/static/app.css' in html and f'src="{PREFIX}/static/common.js' in html
    assert f'data-prefix="{PREFIX}"' in html and f'<a href="{PREFIX}/" class="brand">' in html
    assert prefixed.request("GET", PREFIX + "/static/common.js")[0] == 200
    status, page = prefixed.request("GET", PREFIX + "/api/instances?limit=1")
    assert status == 200 and len(page["items"]) == 1
    assert prefixed.request("GET", "/")[0] == 404  # nothing outside the prefix
    assert prefixed.request("GET", "/api/config")[0] == 404


def test_the_pages_link_and_call_under_the_prefix(prefixed: Setup, browser: Any) -> None:
    client = prefixed.durable.client
    iid = client.schedule_new_orchestration(ua.ORDER, input={"items": ["pen"], "total": 3},
                                            instance_id=f"prefixed-{uuid.uuid4().hex[:6]}")
    context = browser.new_context(base_url=prefixed.base_url, http_credentials={
        "username": USER, "password": prefixed.password})
    context.set_default_timeout(10_000)
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: r.url.startswith(prefixed.base_url + PREFIX + "/")
            or outside.append(r.url))
    try:
        page.goto(f"{PREFIX}/?q={iid}")
        page.wait_for_function("() => Number(document.body.dataset.loaded || 0) >= 1")
        page.click(f'a:text-is("{iid}")')
        page.wait_for_function(f"() => document.querySelector('#iid') && "
                               f"document.querySelector('#iid').textContent === {iid!r} && "
                               "Number(document.body.dataset.loaded || 0) >= 1")
        assert page.url == f"{prefixed.base_url}{PREFIX}/instances/{iid}"
        assert page.query_selector_all("#history tbody tr")  # its history came from the API
        page.click("a.brand")
        page.wait_for_url(f"{prefixed.base_url}{PREFIX}/")
    finally:
        context.close()
    assert outside == []
