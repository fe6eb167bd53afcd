"""The dashboard's JSON API over HTTP: auth, reads, actions and bad input (no browser)."""

from __future__ import annotations

import urllib.parse

import durable_ui_app as ua
import pytest
from durable_ui_helpers import BULK_INSTANCES, FLOWER_URL, USER, Setup, no_change

from celery_durable import OrchestrationStatus

pytestmark = pytest.mark.e2e


def test_every_route_refuses_requests_without_the_credentials(setup: Setup) -> None:
    iid = setup.durable.client.schedule_new_orchestration(ua.WAITER, input="auth")
    setup.durable.client.wait_for_orchestration_start(iid, timeout=20)
    for auth in (None, (USER, "wrong"), ("nobody", setup.password)):
        for path in ("/", f"/instances/{iid}", "/api/instances", f"/api/instances/{iid}"):
            assert setup.request("GET", path, auth=auth)[0] == 401, (path, auth)
        with no_change(setup, iid):
            status, body = setup.request("POST", f"/api/instances/{iid}/terminate", {},
                                         auth=auth)
            assert status == 401, body
    assert setup.request("GET", "/api/instances")[0] == 200
    setup.durable.client.terminate_orchestration(iid)


def test_list_pages_with_the_continuation_token_and_counts(setup: Setup) -> None:
    status, first = setup.request("GET", "/api/instances?limit=100")
    assert status == 200, first
    assert first["total"] >= BULK_INSTANCES
    assert len(first["items"]) == 100 and first["continuation_token"]
    query = urllib.parse.urlencode({"limit": 100, "continuation_token":
                                    first["continuation_token"]})
    second = setup.request("GET", f"/api/instances?{query}")[1]
    ids = [i["instance_id"] for i in first["items"] + second["items"]]
    assert len(set(ids)) == 200
    created = [i["created_at"] for i in first["items"] + second["items"]]
    assert created == sorted(created, reverse=True)  # newest first across pages

    status, bulk = setup.request("GET", "/api/instances?name=ui_e2e.bulk_report&limit=1")
    assert bulk["total"] == BULK_INSTANCES // 2
    failed = setup.request("GET", "/api/instances?status=FAILED&name=ui_e2e.bulk_report")[1]
    assert all(i["status"] == "FAILED" and i["name"] == "ui_e2e.bulk_report"
               for i in failed["items"])
    assert failed["counts"]["FAILED"] == bulk["counts"]["FAILED"]  # counts ignore status


def test_bad_list_parameters_are_refused_with_a_message(setup: Setup) -> None:
    for query, words in [("status=DONE", "unknown status 'DONE'"),
                         ("created_from=yesterday", "created_from must be an ISO 8601"),
                         ("limit=0", "limit must be a whole number"),
                         ("continuation_token=xyz", "invalid continuation token")]:
        status, body = setup.request("GET", f"/api/instances?{query}")
        assert status == 400 and words in body["error"], (query, body)


def test_instance_history_and_timeline(setup: Setup) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.BROKEN, input="x")
    client.wait_for_orchestration_completion(iid, timeout=20)
    status, inst = setup.request("GET", f"/api/instances/{iid}")
    assert status == 200 and inst["status"] == "FAILED"
    assert inst["failure"]["error_type"] == "TaskFailedError"
    assert "cannot handle 'x'" in inst["failure"]["message"]
    events = setup.request("GET", f"/api/instances/{iid}/history")[1]["items"]
    assert [e["kind"] for e in events] == [e.kind for e in client.get_orchestration_history(iid)]
    scheduled = next(e for e in events if e["kind"] == "TaskScheduled")
    record = setup.durable.store.get_instance(iid)
    assert record is not None
    assert scheduled["celery_task_id"] == f"{iid}:{record.execution_id[:8]}:{scheduled['task_id']}:1"
    timeline = setup.request("GET", f"/api/instances/{iid}/timeline")[1]
    assert [(b["kind"], b["outcome"]) for b in timeline["bars"]] == [
        ("orchestration", "failed"), ("activity", "failed")]
    status, svg = setup.request("GET", f"/api/instances/{iid}/timeline.svg")
    assert status == 200 and svg.startswith("<svg") and svg.count('class="bar ') == 2
    assert setup.request("GET", "/api/config")[1]["flower_url"] == FLOWER_URL


def test_actions_do_what_the_client_does(setup: Setup) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.WAITER, input="api")
    client.wait_for_orchestration_start(iid, timeout=20)
    path = f"/api/instances/{urllib.parse.quote(iid, safe='')}"
    assert setup.request("POST", f"{path}/suspend", {"reason": "look"})[0] == 200
    setup.wait("suspended", lambda: client.get_orchestration_state(iid).runtime_status
               is OrchestrationStatus.SUSPENDED)
    assert setup.request("POST", f"{path}/resume", {})[0] == 200
    setup.wait("resumed", lambda: client.get_orchestration_state(iid).runtime_status
               is OrchestrationStatus.RUNNING)
    status, body = setup.request("POST", f"{path}/events", {"name": "go", "data": {"n": 1}})
    assert status == 200, body
    state = client.wait_for_orchestration_completion(iid, timeout=20)
    assert state.output == {"n": 1}
    assert setup.request("POST", f"{path}/purge", {"recursive": False})[1]["purged"] == 1
    assert client.get_orchestration_state(iid) is None


def test_bad_actions_are_refused_and_change_nothing(setup: Setup) -> None:
    client = setup.durable.client
    iid = client.schedule_new_orchestration(ua.WAITER, input="bad")
    client.wait_for_orchestration_start(iid, timeout=20)
    path = f"/api/instances/{iid}"
    cases = [
        (f"{path}/events", b"{not json", "application/json", 400, "not JSON"),
        (f"{path}/events", b'{"data": 1}', "application/json", 400, "needs a name"),
        (f"{path}/events", b"[1]", "application/json", 400, "must be a JSON object"),
        (f"{path}/terminate", b'{"recursive": "yes"}', "application/json", 400,
         "recursive must be true or false"),
        (f"{path}/terminate", b"recursive=1", "application/x-www-form-urlencoded", 415,
         "Content-Type: application/json"),
        (f"{path}/purge", b"{}", "application/json", 409, "only COMPLETED, FAILED"),
    ]
    with no_change(setup, iid):
        for url, body, content_type, code, words in cases:
            status, answer = setup.request("POST", url, body, content_type=content_type)
            assert status == code and words in answer["error"], (url, body, answer)
    for url in ("/api/instances/no-such-instance", "/api/instances/no-such-instance/history"):
        status, answer = setup.request("GET", url)
        assert status == 404 and "no orchestration instance has id" in answer["error"]
    status, answer = setup.request("POST", "/api/instances/no-such-instance/suspend", {})
    assert status == 404, answer
    client.terminate_orchestration(iid)
    client.wait_for_orchestration_completion(iid, timeout=20)
    status, answer = setup.request("POST", f"{path}/events", {"name": "go"})
    assert status == 409 and "already ended" in answer["error"]
