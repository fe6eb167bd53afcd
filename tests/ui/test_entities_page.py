"""The dashboard's entities: ``/api/entities`` (state, lock holder, backlog, pages, bad input)
and the ``/entities`` page in the browser (the holder links to its instance)."""

from __future__ import annotations

import urllib.parse
import uuid

import durable_ui_app as ua
import pytest
from durable_ui_helpers import Setup
from workers import wait_until

from celery_durable import EntityInstanceId

pytestmark = pytest.mark.e2e


def _entities(setup: Setup, **params: object) -> dict:
    status, body = setup.request("GET", "/api/entities?" + urllib.parse.urlencode(params))
    assert status == 200, body
    return body


def test_entities_api_shows_state_lock_holder_and_backlog(setup: Setup) -> None:
    import time

    prefix = uuid.uuid4().hex[:8]
    client = setup.durable.client
    for i in range(3):
        client.signal_entity(EntityInstanceId(ua.STOCK, f"{prefix}-{i}"), "add", input=i + 1)
    iid = client.schedule_new_orchestration(ua.HOLDER, input=f"{prefix}-0")
    wait_until("the holder takes the lock", lambda: (
        m := client.get_entity(EntityInstanceId(ua.STOCK, f"{prefix}-0"))) is not None
        and m.locked_by == iid, time.monotonic() + 30)
    client.signal_entity(EntityInstanceId(ua.STOCK, f"{prefix}-0"), "add", input=10)
    page = _entities(setup, name=ua.STOCK, key_prefix=prefix, limit=2)
    assert [i["id"] for i in page["items"]] == [f"@{ua.STOCK}@{prefix}-0",
                                                f"@{ua.STOCK}@{prefix}-1"]
    first = page["items"][0]
    assert first["state"] == {"units": 1} and first["locked_by"] == iid
    assert first["backlog_queue_size"] == 1  # the add waits for the lock
    rest = _entities(setup, name=ua.STOCK, key_prefix=prefix,
                     continuation_token=page["continuation_token"])
    assert [i["state"] for i in rest["items"]] == [{"units": 3}]
    assert rest["continuation_token"] is None
    client.raise_orchestration_event(iid, "release")
    wait_until("the waiting add runs", lambda: client.get_entity(EntityInstanceId(
        ua.STOCK, f"{prefix}-0")).get_state() == {"units": 11}, time.monotonic() + 30)


@pytest.mark.parametrize("query", ["key_prefix=a", "name=a@b", "limit=0",
                                   "continuation_token=nope", "name=" + "x" * 300])
def test_entities_api_refuses_bad_parameters(setup: Setup, query: str) -> None:
    status, body = setup.request("GET", f"/api/entities?{query}")
    assert status == 400 and body["status"] == 400, body


def test_entities_page_lists_entities_and_links_the_lock_holder(page: object,
                                                                setup: Setup) -> None:
    import time

    key = uuid.uuid4().hex[:8]
    client = setup.durable.client
    client.signal_entity(EntityInstanceId(ua.STOCK, key), "add", input=5)
    iid = client.schedule_new_orchestration(ua.HOLDER, input=key)
    wait_until("the holder takes the lock", lambda: (
        m := client.get_entity(EntityInstanceId(ua.STOCK, key))) is not None
        and m.locked_by == iid, time.monotonic() + 30)
    page.goto(f"/entities?name={ua.STOCK}")  # type: ignore[attr-defined]
    page.fill("#f-name", ua.STOCK)  # type: ignore[attr-defined]
    page.fill("#f-key", key)  # type: ignore[attr-defined]
    page.click("#apply")  # type: ignore[attr-defined]
    row = page.locator(f'tr[data-entity-id="@{ua.STOCK}@{key}"]')  # type: ignore[attr-defined]
    row.wait_for()
    assert '{"units":5}' in row.inner_text()
    row.locator("a").click()
    page.wait_for_url(f"**/instances/{iid}")  # type: ignore[attr-defined]
    client.raise_orchestration_event(iid, "release")
