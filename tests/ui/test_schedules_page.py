"""The dashboard's schedules page and API (``/schedules``, ``/api/schedules``), at the root and
under ``--url-prefix``. The schedule is paused and yearly: it starts nothing during the
session (the other tests count the store's instances)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from durable_ui_helpers import USER, Setup
from test_url_prefix import PREFIX, prefixed  # noqa: F401  (the prefixed dashboard fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture
def schedule_id(setup: Setup) -> Iterator[str]:
    client = setup.durable.client
    schedule_id = f"ui-yearly-{uuid.uuid4().hex[:6]}"
    client.create_schedule(schedule_id, "ui.report", cron="0 0 1 1 *", input={"n": 1})
    client.pause_schedule(schedule_id)
    yield schedule_id
    client.delete_schedule(schedule_id)


def test_api_lists_schedules_with_next_and_last_runs(setup: Setup, schedule_id: str) -> None:
    status, schedules = setup.request("GET", "/api/schedules")
    assert status == 200
    found = next(s for s in schedules if s["schedule_id"] == schedule_id)
    assert found["orchestrator"] == "ui.report" and found["every"] == "cron 0 0 1 1 *"
    assert found["paused"] is True and found["last_run_at"] is None
    assert found["next_run_at"].endswith("-01-01T00:00:00+00:00")
    assert setup.request("GET", "/api/schedules", auth=False)[0] == 401


def test_page_shows_the_schedules(setup: Setup, page: Any, schedule_id: str) -> None:
    page.goto("/")
    page.click("a.nav:text-is('Schedules')")
    page.wait_for_function("() => Number(document.body.dataset.loaded || 0) >= 1")
    row = page.locator(f'#schedules tr[data-id="{schedule_id}"]')
    assert row.locator("td").nth(4).text_content() == "yes"
    assert row.locator(".next-run").text_content().endswith("-01-01 00:00:00")
    assert row.locator(".last-run").text_content() == "-"


def test_page_under_the_url_prefix(prefixed: Setup, browser: Any,  # noqa: F811
                                   schedule_id: str) -> None:
    status, html = prefixed.request("GET", PREFIX + "/schedules")
    assert status == 200 and f'src="{PREFIX}/static/schedules.js' in html
    assert f'href="{PREFIX}/schedules"' in html
    context = browser.new_context(base_url=prefixed.base_url, http_credentials={
        "username": USER, "password": prefixed.password})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: r.url.startswith(prefixed.base_url + PREFIX + "/")
            or outside.append(r.url))
    try:
        page.goto(f"{PREFIX}/schedules")
        page.wait_for_function("() => Number(document.body.dataset.loaded || 0) >= 1")
        assert page.locator(f'#schedules tr[data-id="{schedule_id}"]').count() == 1
        assert outside == []
    finally:
        context.close()
