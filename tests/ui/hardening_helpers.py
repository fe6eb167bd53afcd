"""A real ``celery -A durable_ui_app durable ui`` subprocess on a SQLite store (no worker),
and raw HTTP requests that set any header (``Host``, ``Origin``, a lying ``Content-Length``).

Instances stay PENDING (nothing runs them): what a request would change shows in the store as a
row, a history event or an inbox item, which `store_snapshot` compares.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import time
import urllib.error
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import durable_ui_app as ua
import sqlalchemy as sa
import workers
from durable_ui_helpers import READY_TIMEOUT, ROOT, STOP_TIMEOUT, UI_DIR, free_port
from services import REDIS_URL

from celery_durable import Durable
from celery_durable.store.schema import history, inbox, instances

#: Redis db of these tests (the dashboard publishes wake-ups; nothing consumes them)
BROKER_URL = f"{REDIS_URL}/13"
USER = "ops"


@dataclass
class Dash:
    """A dashboard subprocess: ``port``, its credentials (None: no auth) and the Durable the
    test uses on the same store."""

    port: int
    auth: tuple[str, str] | None
    durable: Durable
    process: workers.CeleryProcess
    prefix: str = ""

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | Any = None, *,
                headers: Mapping[str, str] | None = None, auth: bool = True,
                timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        """One request: (status, headers with lowercase names, JSON body or text). ``headers``
        may set ``Host``; a body that is not bytes is sent as JSON."""
        sent = {"Host": self.host}
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        if data is not None:
            sent["Content-Type"] = "application/json"
        if auth and self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        sent.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, self.prefix + path, skip_host=True,
                            skip_accept_encoding=True)
            for name, value in sent.items():
                conn.putheader(name, value)
            if data is not None and "Content-Length" not in sent:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            response = conn.getresponse()
            raw = response.read()
            got = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        try:
            return response.status, got, json.loads(raw)
        except ValueError:
            return response.status, got, raw.decode(errors="replace")

    def schedule(self, label: str = "x") -> str:
        """A new PENDING instance of the waiter."""
        return self.durable.client.schedule_new_orchestration(
            ua.WAITER, input=label, instance_id=f"{label}-{uuid.uuid4().hex[:8]}")


def store_snapshot(durable: Durable) -> tuple[Any, ...]:
    """Every row of the instances, history and inbox tables."""
    with durable.store.engine.connect() as conn:
        return tuple(tuple(map(tuple, conn.execute(sa.select(table).order_by(
            *table.primary_key.columns)).all())) for table in (instances, history, inbox))


@contextlib.contextmanager
def unchanged(durable: Durable) -> Iterator[None]:
    """Assert that the block leaves the store as it was."""
    before = store_snapshot(durable)
    yield
    assert store_snapshot(durable) == before


@contextlib.contextmanager
def dashboard(tmp: Path, args: list[str], *, auth: tuple[str, str] | None = None,
              env: Mapping[str, str] | None = None, store_url: str | None = None,
              prefix: str = "", code: Path = ROOT) -> Iterator[Dash]:
    """``celery durable ui --port P *args`` on a SQLite store in ``tmp`` (or ``store_url``);
    ``auth``: the credentials its args or ``env`` give it; ``code``: the folder whose
    celery_durable it runs (this checkout's by default)."""
    queue = f"durable-hardening-{uuid.uuid4().hex[:8]}"
    store_url = store_url or f"sqlite:///{tmp / 'store.sqlite3'}"
    _app, durable = ua.make_app(BROKER_URL, store_url, queue, name="durable-hardening")
    durable.store.create_schema()
    port = free_port()
    environment = workers.subprocess_env({**ua.env_config(BROKER_URL, store_url, queue),
                                          **(env or {})}, [UI_DIR, UI_DIR.parent, code])
    process = workers.CeleryProcess("dashboard", "durable_ui_app:app", [
        "durable", "ui", "--port", str(port), *args], env=environment, cwd=tmp,
        log_path=tmp / f"ui-{port}.log", stop_timeout=STOP_TIMEOUT)
    dash = Dash(port, auth, durable, process, prefix)
    try:
        with workers.logs_on_failure([process]):
            workers.wait_until("the dashboard answers", lambda: dash.request(
                "GET", "/api/config", timeout=2)[0] in (200, 401), time.monotonic() +
                READY_TIMEOUT, [process], retry_on=(OSError, urllib.error.URLError,
                                                    http.client.HTTPException))
            yield dash
    finally:
        workers.stop_all([process])
        durable.store.dispose()
        workers.delete_queue(BROKER_URL, queue)


def headers_then_wait(port: int, head: str, timeout: float) -> bytes:
    """Send only a request's head (its body never follows) and return what the server answers
    within ``timeout`` seconds (b"" if nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""
