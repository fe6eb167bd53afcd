"""Tornado request handlers: the two pages and the JSON API under ``/api/``.

Store and broker calls are blocking, so each runs in a thread pool (see `Api`). Before its body
is read, every request is checked (see `refusal` and `celery_durable.ui.security`): its Host,
basic auth when configured, its size, and for an action (POST) that no other site's page sent
it. An action must also send ``Content-Type: application/json``, which a cross-site form cannot
do without the browser asking first (CORS).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import tornado.web
from sqlalchemy.exc import SQLAlchemyError
from tornado.ioloop import IOLoop

from celery_durable.errors import (
    DurableError,
    OrchestrationNotFoundError,
    OrchestrationStateError,
)
from celery_durable.ui.auth import BasicAuth
from celery_durable.ui.dashboard import Dashboard, run_action
from celery_durable.ui.openapi import openapi_document
from celery_durable.ui.security import SECURITY_HEADERS, HostPolicy

logger = logging.getLogger(__name__)


def _params(handler: tornado.web.RequestHandler) -> dict[str, list[str]]:
    return {key: [v.decode("utf-8", "replace") for v in values]
            for key, values in handler.request.query_arguments.items()}


def _status_of(exc: Exception) -> int:
    if isinstance(exc, OrchestrationNotFoundError):
        return 404
    if isinstance(exc, OrchestrationStateError):
        return 409
    if isinstance(exc, (ValueError, TypeError, LookupError, DurableError, OverflowError)):
        return 400
    return 500


def _message_of(exc: Exception) -> str:
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        return f"the store failed ({type(exc).__name__}): {orig or str(exc).split(' [SQL:')[0]}"
    return " ".join(str(exc).split()) or type(exc).__name__


@tornado.web.stream_request_body
class Base(tornado.web.RequestHandler):
    """Checks, before a byte of the body is read: the ``Host`` (DNS rebinding), basic auth,
    the body's declared size and, for a POST, that no other site's page sent it. Every answer
    carries the security headers (`security.SECURITY_HEADERS`); errors are JSON."""

    dashboard: Dashboard
    auth: BasicAuth | None

    def initialize(self, dashboard: Dashboard, auth: BasicAuth | None) -> None:
        self.dashboard = dashboard
        self.auth = auth
        self._chunks: list[bytes] = []
        self._received = 0

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def prepare(self) -> None:
        problem = refusal(self)
        if problem is not None:
            status, message = problem
            self.send_error(status, message=message)

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._received += len(chunk)
        if self._received <= self.settings["max_body_bytes"]:
            self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        """The request body (read after `prepare` has accepted the request)."""
        return b"".join(self._chunks)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = kwargs.get("message") or self._reason
        if status_code == 401:  # (send_error cleared the headers set before it)
            self.set_header("WWW-Authenticate", 'Basic realm="celery_durable"')
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"error": message, "status": status_code}))


def refusal(handler: tornado.web.RequestHandler) -> tuple[int, str] | None:
    """The status and message a request is refused with before its body is read, or None."""
    request = handler.request
    policy: HostPolicy = handler.settings["host_policy"]
    if not policy.allows(request.host):
        return 400, (f"this dashboard does not serve the host {request.host!r}: start it with "
                     "--allowed-hosts NAME to answer to the name a proxy or browser uses")
    auth: BasicAuth | None = getattr(handler, "auth", None)
    if auth is not None and not auth.accepts(request.headers.get("Authorization")):
        return 401, "authentication required: this dashboard was started with basic auth"
    problem = policy.origin_problem(request.method or "GET", request.host,
                                    request.headers.get("Origin"),
                                    request.headers.get("Sec-Fetch-Site"))
    if problem is not None:
        return 403, f"refused: {problem}; act from the dashboard's own pages"
    limit = handler.settings["max_body_bytes"]
    length = request.headers.get("Content-Length", "0").strip() or "0"
    if not length.isdigit():
        return 400, f"Content-Length must be a number of bytes, got {length!r}"
    if int(length) > limit:
        return 413, (f"the request body is {int(length):,} bytes, more than the {limit:,} this "
                     "dashboard reads (durable_max_payload_bytes and the JSON around it)")
    return None


class NotFound(Base):
    """Any path the dashboard does not serve: a JSON 404."""

    def prepare(self) -> None:
        super().prepare()
        if not self._finished:
            self.send_error(404, message=f"no such page or API: {self.request.path}")


class Static(tornado.web.StaticFileHandler):
    """The pages' scripts and styles, with the security headers and the Host check."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def prepare(self) -> None:
        if not self.settings["host_policy"].allows(self.request.host):
            raise tornado.web.HTTPError(400, reason="this dashboard does not serve that host")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self._reason, "status": status_code}))


class PrefixRedirect(tornado.web.RedirectHandler):
    """The prefix alone (``/ops/durable``, as a proxy may pass it on) to its page, with the
    security headers and the Host check."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def prepare(self) -> None:
        if not self.settings["host_policy"].allows(self.request.host):
            raise tornado.web.HTTPError(400, reason="this dashboard does not serve that host")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self._reason, "status": status_code}))


class Page(Base):
    """An HTML page: a shell that its script fills from the API."""

    def initialize(self, dashboard: Dashboard, auth: BasicAuth | None,  # type: ignore[override]
                   template: str) -> None:
        super().initialize(dashboard, auth)
        self.template = template

    def get(self, instance_id: str | None = None) -> None:
        self.render(self.template, instance_id=instance_id or "",
                    config=json.dumps(self.dashboard.config()),
                    prefix=self.settings.get("url_prefix", ""))


class Api(Base):
    """A JSON endpoint: runs a dashboard call in a thread pool (``heavy`` calls, which read or
    replay a whole history, in a pool of their own so that they cannot hold up the others),
    answers its value or ``{"error": message, "status": code}``."""

    async def answer(self, call: Callable[..., Any], *args: Any, heavy: bool = False) -> None:
        executor = self.settings["executors"]["heavy" if heavy else "light"]
        try:
            value = await IOLoop.current().run_in_executor(executor, call, *args)
        except Exception as exc:
            status = _status_of(exc)
            if status == 500:
                logger.exception("dashboard request %s failed", self.request.uri)
            self.set_status(status)
            value = {"error": _message_of(exc), "status": status, "type": type(exc).__name__}
        if isinstance(value, str):
            self.set_header("Content-Type", "image/svg+xml; charset=utf-8")
            self.finish(value)
        else:
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(value, default=str))


class ConfigApi(Api):
    def get(self) -> None:  # no I/O: answered on the loop, whatever the pools are doing
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.dashboard.config()))


class OpenApi(Base):
    """``/api/openapi.json``: the OpenAPI description of this API."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(openapi_document(self.settings.get("url_prefix", ""))))


class InstancesApi(Api):
    async def get(self) -> None:
        await self.answer(self.dashboard.list_instances, _params(self))


class InstanceApi(Api):
    async def get(self, instance_id: str) -> None:
        await self.answer(self.dashboard.instance, instance_id)


class HistoryApi(Api):
    async def get(self, instance_id: str) -> None:
        await self.answer(self.dashboard.history_page, instance_id, _params(self), heavy=True)


class TimelineApi(Api):
    async def get(self, instance_id: str, svg: str | None = None) -> None:
        if svg:
            await self.answer(self.dashboard.timeline_svg, instance_id, heavy=True)
        else:
            await self.answer(lambda iid: self.dashboard.timeline(iid).to_json(), instance_id,
                              heavy=True)


class ActionApi(Api):
    async def post(self, instance_id: str, action: str) -> None:
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/json":
            self.send_error(415, message="send the action's parameters as a JSON object with "
                                         "Content-Type: application/json")
            return
        try:
            body = json.loads(self.body or b"{}")
        except RecursionError:
            self.send_error(400, message="the request body is JSON nested too deeply")
            return
        except ValueError as exc:
            self.send_error(400, message=f"the request body is not JSON: {exc}")
            return
        if not isinstance(body, dict):
            self.send_error(400, message="the request body must be a JSON object")
            return
        await self.answer(run_action, self.dashboard, action, instance_id, body)
