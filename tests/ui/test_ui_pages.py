"""The dashboard in a real headless browser (Debian's Chromium driven by Playwright), against
``celery durable ui`` over a real store with orchestrations run by a real worker.

Screenshots of both pages are written to ``docs/img/`` (docs/ui.md shows them).
"""

from __future__ import annotations

import statistics
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import durable_ui_app as ua
import pytest
from durable_ui_helpers import BULK_NAMES, FLOWER_URL, ROOT, Setup, no_change

from celery_durable import OrchestrationStatus

pytestmark = pytest.mark.e2e

SCREENSHOTS = ROOT / "docs" / "img"
#: the most a page may take to show its data with 10,000 instances in the store (median)
PAGE_BUDGET = 0.300


def _open(page: Any, path: str) -> None:
    """Go to ``path`` and wait until its script has rendered the API's answer once."""
    page.goto(path)
    page.wait_for_function("() => Number(document.body.dataset.loaded || 0) >= 1")


def _reloaded(page: Any) -> None:
    """Wait for the next render (after an action or a filter change)."""
    seen = page.evaluate("Number(document.body.dataset.loaded || 0)")
    page.wait_for_function(f"() => Number(document.body.dataset.loaded || 0) > {seen}")


def _row_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#instances tbody tr[data-instance-id]",
                                     "rows => rows.map(r => r.dataset.instanceId)")


def _bars(page: Any, kind: str, outcome: str | None = None) -> int:
    selector = f'#timeline rect.bar[data-kind="{kind}"]'
    if outcome:
        selector += f'[data-outcome="{outcome}"]'
    return page.locator(selector).count()


def _act(page: Any, action: str, **fields: Any) -> None:
    """Open the action's dialog, fill it in and confirm."""
    page.click(f'#actions button[data-action="{action}"]')
    for field, value in fields.items():
        if isinstance(value, bool):
            page.set_checked(f"#d-{field}", value)
        else:
            page.fill(f"#d-{field}", value)
    page.click("#d-confirm")


def _status(setup: Setup, iid: str) -> OrchestrationStatus | None:
    state = setup.durable.client.get_orchestration_state(iid)
    return None if state is None else state.runtime_status


def test_instance_page_shows_payloads_history_timeline_and_links(setup: Setup,
                                                                 page: Any) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.ORDER, input={"items": ["book"], "total": 12},
                                            instance_id=f"order-{uuid.uuid4().hex[:6]}")
    setup.wait("the order waits for its approval", lambda: (
        client.get_orchestration_state(iid).custom_status or {}).get("step")
        == "waiting for approval")
    _open(page, f"/instances/{iid}")
    assert page.text_content("#status") == "RUNNING"
    assert _bars(page, "event-wait", "running") == 1

    _act(page, "events", name="approval", data='{"by": "ann"}')
    page.wait_for_selector("#action-result:not([hidden])")
    assert page.text_content("#action-result") == f"Raised 'approval' to {iid}."
    state = client.wait_for_orchestration_completion(iid, timeout=20)
    assert state.output["approval"] == {"by": "ann"}

    _open(page, f"/instances/{iid}")
    assert page.text_content("#status") == "COMPLETED"
    assert '"by": "ann"' in page.text_content("#output")
    assert '"step": "done"' in page.text_content("#custom-status")
    assert '"total": 12' in page.text_content("#input")
    history = client.get_orchestration_history(iid)
    shown = page.eval_on_selector_all("#history tbody tr", "rows => rows.map(r => r.dataset.kind)")
    assert shown == [e.kind for e in history]
    # one bar per activity attempt: reserve, then charge failing twice and succeeding
    assert _bars(page, "activity") == 1 + ua.FLAKY_FAILURES + 1
    assert _bars(page, "activity", "failed") == ua.FLAKY_FAILURES
    assert _bars(page, "retry-timer", "completed") == ua.FLAKY_FAILURES
    assert _bars(page, "timer", "completed") == 1
    assert _bars(page, "sub-orchestration", "completed") == 1
    assert _bars(page, "event-wait", "completed") == 1
    assert _bars(page, "orchestration", "completed") == 1
    labels = page.eval_on_selector_all('#timeline rect[data-kind="activity"]',
                                       "bars => bars.map(b => b.dataset.label)")
    assert labels == ["ui_e2e.reserve", "ui_e2e.charge", "ui_e2e.charge (attempt 2)",
                      "ui_e2e.charge (attempt 3)"]
    # the Celery task id the activity ran under links to that task in Flower
    ran_as = state.output["reserved"]["celery_task_id"]
    href = page.get_attribute(f'a.celery-task:text-is("{ran_as}")', "href")
    assert href == f"{FLOWER_URL}/task/{urllib.parse.quote(ran_as, safe='')}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "ui-instance.png"), full_page=True)

    page.click("a.child-link")
    page.wait_for_function("() => Number(document.body.dataset.loaded || 0) >= 1 && "
                           "document.querySelector('#parent-link')")
    child = page.text_content("#iid")
    assert state.output["shipped"]["reserved"] == ["book"]
    assert _status(setup, child) is OrchestrationStatus.COMPLETED
    page.click("#parent-link")
    page.wait_for_function(f"() => document.querySelector('#iid').textContent === {iid!r} && "
                           "Number(document.body.dataset.loaded || 0) >= 1")


def test_instances_page_filters_pages_and_refreshes(setup: Setup, page: Any) -> None:
    client = setup.durable.client
    mark = uuid.uuid4().hex[:6]
    waiting = [client.schedule_new_orchestration(ua.WAITER, input=i, instance_id=f"w-{mark}-{i}")
               for i in range(2)]
    broken = client.schedule_new_orchestration(ua.BROKEN, input=1, instance_id=f"b-{mark}")
    client.wait_for_orchestration_completion(broken, timeout=20)
    for iid in waiting:
        client.wait_for_orchestration_start(iid, timeout=20)

    _open(page, "/")
    assert len(_row_ids(page)) == 50
    total = page.text_content("#counts .total")
    assert total is not None and int(total.split()[0]) > 10_000

    page.fill("#f-q", mark)
    page.click("#apply")
    _reloaded(page)
    assert sorted(_row_ids(page)) == sorted([*waiting, broken])
    assert f"q={mark}" in page.url  # the view can be shared
    page.check('#status-filter input[value="FAILED"]')
    _reloaded(page)
    assert _row_ids(page) == [broken]
    page.uncheck('#status-filter input[value="FAILED"]')
    _reloaded(page)
    page.fill("#f-name", ua.WAITER)
    page.click("#apply")
    _reloaded(page)
    assert sorted(_row_ids(page)) == sorted(waiting)

    # auto-refresh: a new matching instance appears without a click
    late = client.schedule_new_orchestration(ua.WAITER, input=3, instance_id=f"w-{mark}-late")
    page.wait_for_selector(f'#instances tr[data-instance-id="{late}"]', timeout=5_000)

    # time range: the bulk instances were created over the ten days before the last hour
    page.click("#clear")
    _reloaded(page)
    hour_ago = (datetime.now(timezone.utc) - timedelta(minutes=59)).strftime("%Y-%m-%dT%H:%M:%S")
    page.fill("#f-to", hour_ago)
    page.click("#apply")
    _reloaded(page)
    names = page.eval_on_selector_all("#instances tbody tr td:nth-child(2)",
                                      "cells => cells.map(c => c.textContent)")
    assert len(names) == 50 and set(names) <= set(BULK_NAMES)
    page.fill("#f-to", "")
    page.fill("#f-from", hour_ago)
    page.click("#apply")
    _reloaded(page)
    recent = _row_ids(page)
    assert late in recent and not [r for r in recent if r.startswith("bulk-")]

    # paging with the continuation token
    page.click("#clear")
    _reloaded(page)
    first = _row_ids(page)
    page.click("#next")
    _reloaded(page)
    second = _row_ids(page)
    assert len(second) == 50 and not set(first) & set(second)
    assert page.text_content("#page-info") == "page 2"
    page.click("#prev")
    _reloaded(page)
    assert _row_ids(page)[:10] == first[:10]

    client.terminate_orchestration(late)
    page.uncheck("#auto-refresh")
    page.screenshot(path=str(SCREENSHOTS / "ui-instances.png"), full_page=False)


def test_actions_from_the_instance_page(setup: Setup, page: Any) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.WAITER, input={"child": True},
                                            instance_id=f"steer-{uuid.uuid4().hex[:6]}")
    child = f"{iid}-child"
    setup.wait("the child runs", lambda: _status(setup, child) is OrchestrationStatus.RUNNING)
    _open(page, f"/instances/{iid}")

    _act(page, "suspend", reason="checking")
    page.wait_for_selector("#action-result:not([hidden])")
    setup.wait("suspended", lambda: _status(setup, iid) is OrchestrationStatus.SUSPENDED)
    _act(page, "resume")
    setup.wait("resumed", lambda: _status(setup, iid) is OrchestrationStatus.RUNNING)
    assert page.text_content("#action-result") == f"Asked {iid} to resume."

    # cancelled: nothing happens
    with no_change(setup, iid):
        page.click('#actions button[data-action="terminate"]')
        page.click("#d-cancel")

    _act(page, "terminate", output='"stopped by hand"', recursive=True)
    setup.wait("terminated, with its child", lambda: _status(setup, iid)
               is _status(setup, child) is OrchestrationStatus.TERMINATED)
    assert client.get_orchestration_state(iid).output == "stopped by hand"
    page.wait_for_function("() => document.querySelector('#instance').dataset.status === "
                           "'TERMINATED'")
    _act(page, "purge", recursive=True)
    page.wait_for_function("() => document.querySelector('#instance').dataset.status === 'PURGED'")
    assert page.text_content("#action-result") == "Purged 2 instance(s)."
    assert _status(setup, iid) is None and _status(setup, child) is None


def test_bad_input_shows_an_error_and_changes_nothing(setup: Setup, page: Any) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.WAITER, input="bad")
    client.wait_for_orchestration_start(iid, timeout=20)
    _open(page, f"/instances/{iid}")
    page.uncheck("#auto-refresh")
    with no_change(setup, iid):
        _act(page, "events", name="go", data="{oops")
        page.wait_for_selector("#dialog-error:not([hidden])")
        assert "Data is not valid JSON" in page.text_content("#dialog-error")
        page.fill("#d-name", "")
        page.fill("#d-data", "1")
        page.click("#d-confirm")
        page.wait_for_selector("#dialog-error:text('needs a name')")
        page.click("#d-cancel")
        _act(page, "terminate", output="not json")
        page.wait_for_selector("#dialog-error:text('Output is not valid JSON')")
        page.click("#d-cancel")
    assert page.locator('#actions button[data-action="purge"]').is_disabled()  # still running

    _open(page, "/instances/no-such-instance")
    assert "no orchestration instance has id 'no-such-instance'" in page.text_content("#error")
    assert page.locator('#actions button[data-action="terminate"]').is_disabled()
    _open(page, "/?q=no-such-instance")
    assert page.text_content("#instances tbody") == "No instance matches."
    client.terminate_orchestration(iid)


def _median_load(page: Any, path: str, runs: int = 5) -> tuple[float, float]:
    """The median time (s) the page took to show its data, as the browser measures it (from
    navigation start to the first render of the API's answer), and as this test sees it
    (including Playwright's round trips)."""
    _open(page, path)  # warm: templates compiled, static files cached, connections pooled
    in_browser, seen = [], []
    for _ in range(runs):
        started = time.perf_counter()
        _open(page, path)
        seen.append(time.perf_counter() - started)
        in_browser.append(float(page.evaluate("document.body.dataset.readyMs")) / 1000)
    return statistics.median(in_browser), statistics.median(seen)


def test_pages_stay_fast_with_10000_instances(setup: Setup, page: Any) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.BROKEN, input="timing")
    client.wait_for_orchestration_completion(iid, timeout=20)
    paths = {"instances": "/", "instances, filtered": "/?status=FAILED&name=ui_e2e.bulk_report",
             "instances, id search": "/?q=bulk-0999", "instance": f"/instances/{iid}"}
    measured = {what: _median_load(page, path) for what, path in paths.items()}
    print("\nmedian page load with 10,000 instances (in the browser / seen by the test): "
          + ", ".join(f"{what} {browser * 1000:.0f} / {seen * 1000:.0f} ms"
                      for what, (browser, seen) in measured.items()))
    for what, (browser, _seen) in measured.items():
        assert browser < PAGE_BUDGET, f"{what}: {browser * 1000:.0f} ms"
