"""Tornado request handlers: the two pages and the JSON API under ``/api/``.

Store and broker calls are blocking, so each runs in the IO loop's thread pool. Every request
is refused with 401 when basic auth is configured and the request does not carry it; an action
(POST) must also send ``Content-Type: application/json``, which a cross-site form cannot do
without the browser asking first (CORS), so a page elsewhere cannot act with the user's login.
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

logger = logging.getLogger(__name__)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, OrchestrationNotFoundError):
        return 404
    if isinstance(exc, OrchestrationStateError):
        return 409
    if isinstance(exc, (ValueError, TypeError, LookupError, DurableError)):
        return 400
    return 500


def _message_of(exc: Exception) -> str:
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        return f"the store failed ({type(exc).__name__}): {orig or str(exc).split(' [SQL:')[0]}"
    return " ".join(str(exc).split()) or type(exc).__name__


class Base(tornado.web.RequestHandler):
    """Checks basic auth before anything else."""

    dashboard: Dashboard
    auth: BasicAuth | None

    def initialize(self, dashboard: Dashboard, auth: BasicAuth | None) -> None:
        self.dashboard = dashboard
        self.auth = auth

    def prepare(self) -> None:
        if self.auth is not None and not self.auth.accepts(
                self.request.headers.get("Authorization")):
            self.send_error(401, message="authentication required: this dashboard was started "
                                         "with --basic-auth")
            return

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = kwargs.get("message") or self._reason
        if status_code == 401:  # (send_error cleared the headers set before it)
            self.set_header("WWW-Authenticate", 'Basic realm="celery_durable"')
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "status": status_code}))


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
    """A JSON endpoint: runs a dashboard call in the thread pool, answers its value or
    ``{"error": message, "status": code}``."""

    async def answer(self, call: Callable[..., Any], *args: Any) -> None:
        try:
            value = await IOLoop.current().run_in_executor(None, call, *args)
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
    async def get(self) -> None:
        await self.answer(self.dashboard.config)


class InstancesApi(Api):
    async def get(self) -> None:
        params = {key: [v.decode("utf-8", "replace") for v in values]
                  for key, values in self.request.query_arguments.items()}
        await self.answer(self.dashboard.list_instances, params)


class InstanceApi(Api):
    async def get(self, instance_id: str) -> None:
        await self.answer(self.dashboard.instance, instance_id)


class HistoryApi(Api):
    async def get(self, instance_id: str) -> None:
        await self.answer(self.dashboard.history, instance_id)


class TimelineApi(Api):
    async def get(self, instance_id: str, svg: str | None = None) -> None:
        if svg:
            await self.answer(self.dashboard.timeline_svg, instance_id)
        else:
            await self.answer(lambda iid: self.dashboard.timeline(iid).to_json(), instance_id)


class ActionApi(Api):
    async def post(self, instance_id: str, action: str) -> None:
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/json":
            self.send_error(415, message="send the action's parameters as a JSON object with "
                                         "Content-Type: application/json")
            return
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            self.send_error(400, message=f"the request body is not JSON: {exc}")
            return
        if not isinstance(body, dict):
            self.send_error(400, message="the request body must be a JSON object")
            return
        await self.answer(run_action, self.dashboard, action, instance_id, body)
