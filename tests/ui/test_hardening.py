"""The dashboard probed as an attacker would (issue 16), one table per finding, against real
``celery durable ui`` subprocesses: one as started by default (127.0.0.1, no auth), one with
basic auth read from a file."""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hardening_helpers import USER, Dash, dashboard, headers_then_wait, unchanged

from celery_durable.engine import history as h
from celery_durable.store.records import to_db_time
from celery_durable.store.schema import history

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-" + "x" * 8
EVIL = "evil.example"


@pytest.fixture(scope="module")
def open_dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    """As a developer starts it: ``celery durable ui`` (127.0.0.1, no auth)."""
    with dashboard(tmp_path_factory.mktemp("open"), []) as dash:
        yield dash


@pytest.fixture(scope="module")
def locked_dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    """With basic auth from DURABLE_UI_BASIC_AUTH (so ``ps`` does not show the password)."""
    with dashboard(tmp_path_factory.mktemp("locked"), [], auth=(USER, PASSWORD),
                   env={"DURABLE_UI_BASIC_AUTH": f"{USER}:{PASSWORD}"}) as dash:
        yield dash


# -- 1. DNS rebinding and cross-site requests ------------------------------------------------------

REBINDING = [
    # (Host, Origin, Sec-Fetch-Site, status): a POST that terminates an instance
    (f"{EVIL}:{{port}}", f"http://{EVIL}:{{port}}", None, 400),  # the rebinding attack
    (f"{EVIL}:{{port}}", None, None, 400),
    ("127.0.0.1:{port}", f"http://{EVIL}", None, 403),
    ("127.0.0.1:{port}", "null", None, 403),
    ("127.0.0.1:{port}", "http://127.0.0.1:1", None, 403),  # another port: another origin
    ("localhost:{port}", None, "cross-site", 403),
    ("127.0.0.1.nip.io:{port}", None, None, 400),
    ("", None, None, 400),
]


@pytest.mark.parametrize(("host", "origin", "site", "status"), REBINDING)
def test_requests_for_another_host_or_from_another_site_change_nothing(
        open_dash: Dash, host: str, origin: str | None, site: str | None, status: int) -> None:
    iid = open_dash.schedule("rebind")
    headers = {"Host": host.format(port=open_dash.port)}
    if origin:
        headers["Origin"] = origin.format(port=open_dash.port)
    if site:
        headers["Sec-Fetch-Site"] = site
    with unchanged(open_dash.durable):
        got, _, body = open_dash.request("POST", f"/api/instances/{iid}/terminate", {},
                                         headers=headers)
        assert (got, body["status"]) == (status, status), body
        assert isinstance(body["error"], str) and "Traceback" not in body["error"]
    if status == 400:  # reads are refused for that host too
        assert open_dash.request("GET", "/api/config", headers=headers)[0] == 400


@pytest.mark.parametrize(("host", "origin"), [
    ("127.0.0.1:{port}", "http://127.0.0.1:{port}"),  # the page's own origin
    ("localhost:{port}", "http://localhost:{port}"),
    ("[::1]:{port}", None),
    ("127.0.0.1:{port}", None),  # curl, a script: no Origin
])
def test_the_dashboards_own_origin_may_act(open_dash: Dash, host: str,
                                           origin: str | None) -> None:
    iid = open_dash.schedule("own")
    headers = {"Host": host.format(port=open_dash.port)}
    if origin:
        headers["Origin"] = origin.format(port=open_dash.port)
    waiting = open_dash.durable.store.inbox_size(iid)
    status, _, body = open_dash.request("POST", f"/api/instances/{iid}/suspend",
                                        {"reason": "maintenance"}, headers=headers)
    assert status == 200, body
    assert open_dash.durable.store.inbox_size(iid) == waiting + 1


# -- 2. bodies are not read before authentication ---------------------------------------------------

BIG = 99 * 1024 * 1024


@pytest.mark.parametrize(("auth", "length", "status"), [
    (False, BIG, 401),  # no credentials: refused before the body
    (True, BIG, 413),  # credentials, but more than any payload
    (True, 5 * 1024 * 1024, 413),  # over durable_max_payload_bytes (4 MiB) + 64 KiB
])
def test_a_large_body_is_refused_before_it_is_read(locked_dash: Dash, auth: bool, length: int,
                                                   status: int) -> None:
    iid = locked_dash.schedule("big")
    lines = [f"POST /api/instances/{iid}/events HTTP/1.1", f"Host: {locked_dash.host}",
             "Content-Type: application/json", f"Content-Length: {length}"]
    if auth:
        lines.append("Authorization: Basic " + base64.b64encode(
            f"{USER}:{PASSWORD}".encode()).decode())
    with unchanged(locked_dash.durable):
        started = time.monotonic()
        answer = headers_then_wait(locked_dash.port, "\r\n".join(lines) + "\r\n\r\n", 5.0)
        took = time.monotonic() - started
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert took < 2.0
    assert b'"error"' in answer


def test_three_parallel_large_unauthenticated_posts_do_not_grow_the_dashboard(
        locked_dash: Dash) -> None:
    """The issue's probe: three 99 MB POSTs without credentials. Each is refused at its head;
    the dashboard's memory stays where it was (it was 233 -> 613 MB before)."""
    def rss() -> int:  # bytes the dashboard process holds in memory (Linux)
        status = Path(f"/proc/{locked_dash.process.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]

    before = rss()
    results: list[bytes] = []

    def post() -> None:
        head = (f"POST /api/instances/x/events HTTP/1.1\r\nHost: {locked_dash.host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {BIG}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", locked_dash.port), timeout=10) as sock:
            sock.sendall(head.encode())
            chunk = b"[" * (1024 * 1024)
            try:
                for _ in range(99):
                    sock.sendall(chunk)
            except OSError:
                pass  # the dashboard closed the connection: what we want
            try:
                results.append(sock.recv(4096))
            except OSError:
                results.append(b"")

    threads = [threading.Thread(target=post) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    grown = (rss() - before) / 2**20
    assert grown < 30, f"the dashboard grew by {grown:.0f} MB"
    assert all(r.startswith(b"HTTP/1.1 401 ") for r in results if r), results


# -- 3. security headers -----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "auth", "status"), [
    ("/", True, 200), ("/instances/some-id", True, 200), ("/api/config", True, 200),
    ("/api/instances", True, 200), ("/static/common.js", True, 200),
    ("/api/instances/no-such-id", True, 404), ("/no/such/page", True, 404),
    ("/", False, 401), ("/api/config", False, 401),
])
def test_every_answer_forbids_framing_sniffing_and_foreign_scripts(
        locked_dash: Dash, path: str, auth: bool, status: int) -> None:
    got, headers, _ = locked_dash.request("GET", path, auth=auth)
    assert got == status
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, headers
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"


def test_the_pages_have_no_inline_script_or_style(locked_dash: Dash) -> None:
    for path in ("/", "/instances/some-id"):
        html = locked_dash.request("GET", path)[2]
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), html
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), html


# -- 4. stored values are checked as payloads are --------------------------------------------------

LIMIT = 4 * 1024 * 1024  # the default durable_max_payload_bytes


@pytest.mark.parametrize(("action", "body", "status", "words"), [
    ("suspend", {"reason": "r" * (LIMIT + 1)}, 400, "the reason to suspend is"),
    ("resume", {"reason": "r" * (LIMIT + 1)}, 400, "the reason to resume is"),
    ("suspend", {"reason": ["not", "text"]}, 400, "must be a string"),
    ("events", {"name": "n" * 257}, 400, "event name must be a string of 1 to 256"),
    ("events", {"name": "bell\x07"}, 400, "without control characters"),
    ("events", {"name": "e", "data": "d" * (LIMIT + 1)}, 400, "durable_max_payload_bytes"),
    ("terminate", {"output": "o" * (LIMIT + 1)}, 400, "durable_max_payload_bytes"),
])
def test_every_stored_value_is_checked(locked_dash: Dash, action: str, body: dict[str, Any],
                                       status: int, words: str) -> None:
    iid = locked_dash.schedule("values")
    with unchanged(locked_dash.durable):
        got, _, answer = locked_dash.request("POST", f"/api/instances/{iid}/{action}", body)
    assert got == status and words in answer["error"], (got, str(answer)[:300])


# -- 5. history paging -------------------------------------------------------------------------------

def _long_history(dash: Dash, events: int) -> str:
    """An instance whose current execution has ``events`` history events (inserted directly)."""
    iid = dash.schedule("long")
    record = dash.durable.store.get_instance(iid)
    assert record is not None
    assert dash.durable.store.get_history(iid) == []  # (its start event waits in its inbox)
    rows = [{"instance_id": iid, "execution_id": record.execution_id, "seq": seq,
             "kind": h.EVENT_RAISED, "timestamp": to_db_time(record.created_at),
             "task_id": None, "name": f"tick-{seq}", "data": f'{{"n":{seq}}}'}
            for seq in range(events)]
    with dash.durable.store.engine.begin() as conn:
        conn.execute(sa.insert(history), rows)
    return iid


@pytest.fixture(scope="module")
def long_instance(locked_dash: Dash) -> str:
    return _long_history(locked_dash, 20_001)


@pytest.mark.parametrize(("query", "first", "last", "earlier", "later"), [
    ("", 0, 199, False, True),  # the first page, 200 events
    ("?limit=10", 0, 9, False, True),
    ("?after=9&limit=10", 10, 19, True, True),
    ("?before=20000&limit=5", 19995, 19999, True, True),
    ("?before=20001&limit=3", 19998, 20000, True, False),  # the latest page
    ("?after=19990", 19991, 20000, True, False),
    ("?limit=1000&after=4999", 5000, 5999, True, True),
])
def test_history_comes_in_pages(locked_dash: Dash, long_instance: str, query: str, first: int,
                                last: int, earlier: bool, later: bool) -> None:
    status, headers, page = locked_dash.request(
        "GET", f"/api/instances/{long_instance}/history{query}")
    assert status == 200, page
    seqs = [e["seq"] for e in page["items"]]
    assert seqs == list(range(first, last + 1))
    assert (page["total"], page["first_seq"], page["last_seq"]) == (20_001, 0, 20_000)
    assert (page["earlier"], page["later"]) == (earlier, later)
    if not query:
        assert len(str(page)) < 60_000  # the whole history was 4.4 MB a call


@pytest.mark.parametrize(("query", "words"), [
    ("?limit=0", "limit must be a whole number from 1 to 1000"),
    ("?limit=1001", "limit must be a whole number"),
    ("?after=x", "after must be a whole number"),
    ("?before=-5", "before must be a whole number"),
    ("?after=99999999999999999999999", "after must be a whole number"),
])
def test_bad_history_parameters_are_refused(locked_dash: Dash, long_instance: str,
                                            query: str, words: str) -> None:
    status, _, answer = locked_dash.request(
        "GET", f"/api/instances/{long_instance}/history{query}")
    assert status == 400 and words in answer["error"], answer


# -- 6. every bad input is a 4xx with a JSON error ---------------------------------------------------

DEEP = b'{"name": "e", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
BAD_INPUT = [
    ("GET", "/api/instances?created_from=9999-12-31T23:59:59-14:00", None, 400,
     "created_from must be an ISO 8601"),
    ("GET", "/api/instances?created_to=0001-01-01T00:00:00%2B14:00", None, 400,
     "created_to must be an ISO 8601"),
    ("POST", "/api/instances/{iid}/events", DEEP, 400, "nested too deeply"),
    ("POST", "/api/instances/{iid}/events",
     b'{"name": "e", "data": ' + b"[" * 500 + b"]" * 500 + b"}", 400, "nested 128"),
    ("POST", "/api/instances/{iid}/terminate",
     b'{"output": ' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}", 400, "nested 128"),
    ("GET", "/no/such/path", None, 404, "no such page or API"),
    ("GET", "/static/no-such-file.js", None, 404, "Not Found"),
    ("GET", "/api/instances/{iid}/nothing", None, 404, "no such page or API"),
    ("PUT", "/api/instances/{iid}/terminate", b"{}", 405, "Method Not Allowed"),
    ("DELETE", "/api/config", None, 405, "Method Not Allowed"),
    ("GET", "/api/instances/%ff%fe", None, 400, ""),
    ("POST", "/api/instances/{iid}/events", b'{"name": "e", "data": "\\ud800"}', 200, ""),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD_INPUT)
def test_bad_input_is_a_4xx_with_a_json_error(locked_dash: Dash, method: str, path: str,
                                              body: bytes | None, status: int,
                                              words: str) -> None:
    iid = locked_dash.schedule("bad")
    with unchanged(locked_dash.durable) if status != 200 else contextlib.nullcontext():
        got, headers, answer = locked_dash.request(method, path.format(iid=iid), body)
    assert got == status, (got, str(answer)[:300])
    assert headers["content-type"].startswith("application/json")
    if status >= 400:
        assert answer["status"] == status and words in answer["error"], answer
        assert "Traceback" not in str(answer)


# -- 7. the API's description ------------------------------------------------------------------------

def test_the_openapi_description_is_served(locked_dash: Dash) -> None:
    status, _, doc = locked_dash.request("GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {"/api/config", "/api/instances", "/api/instances/{instance_id}",
                                 "/api/instances/{instance_id}/history",
                                 "/api/instances/{instance_id}/terminate"}
    assert locked_dash.request("GET", "/api/openapi.json", auth=False)[0] == 401


def test_a_prefixed_dashboard_checks_the_same(tmp_path: Path) -> None:
    """CSP, Host and Origin checks and --url-prefix agree: everything under the prefix, the
    same refusals, a JSON 404 outside it."""
    with dashboard(tmp_path, ["--url-prefix", "/ops/durable"], prefix="/ops/durable") as dash:
        iid = dash.schedule("prefixed")
        status, headers, doc = dash.request("GET", "/api/openapi.json")
        assert status == 200 and doc["servers"] == [{"url": "/ops/durable"}]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        with unchanged(dash.durable):
            assert dash.request("POST", f"/api/instances/{iid}/terminate", {}, headers={
                "Origin": f"http://{EVIL}"})[0] == 403
            assert dash.request("GET", "/", headers={"Host": EVIL})[0] == 400
        dash.prefix = ""
        status, headers, _ = dash.request("GET", "/ops/durable")  # the prefix alone
        assert status == 301 and headers["location"] == "/ops/durable/"
        assert headers["x-frame-options"] == "DENY"
        assert dash.request("GET", "/ops/durable", headers={"Host": EVIL})[0] == 400
        status, headers, answer = dash.request("GET", "/api/config")
        assert status == 404 and answer["status"] == 404
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
