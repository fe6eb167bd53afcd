"""Restart and rewind from the dashboard: the API actions (same auth, Origin and body rules as
the others) and the instance page's buttons with their confirmation dialog."""

from __future__ import annotations

import urllib.parse
from typing import Any

import durable_ui_app as ua
import pytest
from durable_ui_helpers import USER, Setup, no_change
from test_ui_pages import _act, _open, _status

from celery_durable import OrchestrationStatus
from celery_durable.engine import history as h

pytestmark = pytest.mark.e2e


def test_restart_and_rewind_through_the_api(setup: Setup) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.BROKEN, input="api-rewind")
    assert client.wait_for_orchestration_completion(iid, timeout=20).runtime_status is \
        OrchestrationStatus.FAILED
    path = f"/api/instances/{urllib.parse.quote(iid, safe='')}"
    with no_change(setup, iid):
        assert setup.request("POST", f"{path}/rewind", {}, auth=(USER, "wrong"))[0] == 401
        status, answer = setup.request("POST", f"{path}/restart", {"new_id": "yes"})
        assert status == 400 and "new_id must be true or false" in answer["error"]
    status, answer = setup.request("POST", f"{path}/rewind", {"reason": "try again"})
    assert status == 200 and answer["message"] == \
        f"Rewound {iid}; it runs again from its failures.", answer
    # the activity fails again (the code is unchanged): the rewind is in the history
    setup.wait("failed again", lambda: any(
        e.kind == h.EXECUTION_COMPLETED for e in client.get_orchestration_history(iid)))
    (record,) = [e for e in client.get_orchestration_history(iid)
                 if e.kind == h.EXECUTION_REWOUND]
    assert record.data["reason"] == "try again"

    waiting = client.schedule_new_orchestration(ua.WAITER, input="api-restart")
    client.wait_for_orchestration_start(waiting, timeout=20)
    wpath = f"/api/instances/{urllib.parse.quote(waiting, safe='')}"
    with no_change(setup, waiting):
        status, answer = setup.request("POST", f"{wpath}/rewind", {})
        assert status == 409 and "only a FAILED instance can be rewound" in answer["error"]
    status, answer = setup.request("POST", f"{wpath}/restart", {})
    assert status == 200 and answer["instance_id"] != waiting, answer
    assert answer["message"] == f"Restarted {waiting} as {answer['instance_id']}."
    for target in (waiting, answer["instance_id"]):
        client.raise_orchestration_event(target, "go", data=target)
        assert client.wait_for_orchestration_completion(target, timeout=20).output == target
    status, answer = setup.request("POST", f"{wpath}/restart", {"new_id": False})
    assert status == 200 and answer == {"message": f"Restarted {waiting}.",
                                        "instance_id": waiting}
    setup.wait("running again", lambda: _status(setup, waiting) is OrchestrationStatus.RUNNING)
    client.terminate_orchestration(waiting)


def test_restart_and_rewind_from_the_instance_page(setup: Setup, page: Any) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.BROKEN, input="page-rewind")
    client.wait_for_orchestration_completion(iid, timeout=20)
    _open(page, f"/instances/{iid}")
    assert not page.locator('#actions button[data-action="rewind"]').is_disabled()
    with no_change(setup, iid):  # cancelled: nothing happens
        page.click('#actions button[data-action="rewind"]')
        page.click("#d-cancel")
    _act(page, "rewind", reason="from the page")
    page.wait_for_selector("#action-result:not([hidden])")
    assert page.text_content("#action-result") == \
        f"Rewound {iid}; it runs again from its failures."
    setup.wait("rewound", lambda: any(e.kind == h.EXECUTION_REWOUND
                                      for e in client.get_orchestration_history(iid)))

    waiting = client.schedule_new_orchestration(ua.WAITER, input="page-restart")
    client.wait_for_orchestration_start(waiting, timeout=20)
    _open(page, f"/instances/{waiting}")
    assert page.locator('#actions button[data-action="rewind"]').is_disabled()  # running
    _act(page, "restart", **{"new-id": True})
    page.wait_for_selector("#action-result:not([hidden])")
    text = page.text_content("#action-result") or ""
    assert text.startswith(f"Restarted {waiting} as ")
    other = text.rsplit(" ", 1)[-1].rstrip(".")
    setup.wait("the copy runs", lambda: _status(setup, other) is OrchestrationStatus.RUNNING)
    for target in (waiting, other):
        client.terminate_orchestration(target)
