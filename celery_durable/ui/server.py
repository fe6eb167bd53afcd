"""The dashboard's Tornado application and the loop that serves it."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web

from celery_durable.ui import handlers, schedules
from celery_durable.ui.auth import BasicAuth
from celery_durable.ui.dashboard import ACTIONS, Dashboard

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
_ID = r"([^/]+)"


def url_prefix(value: str | None) -> str:
    """The path the dashboard is served under behind a proxy: ``""`` (the root) or
    ``"/a/b"`` (a leading slash, no trailing one). ``ValueError`` for a value no proxy path
    takes (a URL, a query, spaces)."""
    path = (value or "").strip("/")
    if not path:
        return ""
    if not re.fullmatch(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]+", path) or "//" in path or \
            any(part in {".", ".."} for part in path.split("/")):
        raise ValueError(f"--url-prefix must be a URL path such as /durable, got {value!r}")
    return "/" + path


def make_application(dashboard: Dashboard, auth: BasicAuth | None = None,
                     prefix: str = "") -> tornado.web.Application:
    """The routes, under ``prefix`` (see `url_prefix`): ``/`` (instances), ``/instances/<id>``,
    ``/static/...`` and ``/api/...``."""
    prefix = url_prefix(prefix)
    common: dict[str, Any] = {"dashboard": dashboard, "auth": auth}
    actions = "|".join(ACTIONS)
    routes: list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]] = [
        (r"/", handlers.Page, {**common, "template": "instances.html"}),
        (rf"/instances/{_ID}", handlers.Page, {**common, "template": "instance.html"}),
        (r"/schedules", handlers.Page, {**common, "template": "schedules.html"}),
        (r"/api/schedules", schedules.SchedulesApi, common),
        (r"/api/config", handlers.ConfigApi, common),
        (r"/api/instances", handlers.InstancesApi, common),
        (rf"/api/instances/{_ID}", handlers.InstanceApi, common),
        (rf"/api/instances/{_ID}/history", handlers.HistoryApi, common),
        (rf"/api/instances/{_ID}/timeline(\.svg)?", handlers.TimelineApi, common),
        (rf"/api/instances/{_ID}/({actions})", handlers.ActionApi, common),
    ]
    routed: list[Any] = [(re.escape(prefix) + path, handler, kwargs)
                         for path, handler, kwargs in routes]
    if prefix:  # the prefix alone, as a proxy may pass it on, goes to its page
        routed.append((re.escape(prefix), tornado.web.RedirectHandler, {"url": prefix + "/"}))
    return tornado.web.Application(
        routed, template_path=str(HERE / "templates"), static_path=str(HERE / "static"),
        static_url_prefix=prefix + "/static/", url_prefix=prefix,
        autoescape="xhtml_escape", compress_response=True, xheaders=False)


async def _serve(dashboard: Dashboard, address: str, port: int, auth: BasicAuth | None,
                 ready: Callable[[str], None], prefix: str) -> None:
    app = make_application(dashboard, auth, prefix)
    server = app.listen(port, address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready(f"http://{address}:{port}{url_prefix(prefix)}/")
    await stop.wait()
    server.stop()
    await server.close_all_connections()


def serve(dashboard: Dashboard, *, address: str = "127.0.0.1", port: int = 5566,
          auth: BasicAuth | None = None, ready: Callable[[str], None] = print,
          prefix: str = "") -> None:
    """Serve the dashboard (under the path ``prefix``) until SIGINT or SIGTERM; ``ready`` gets
    its URL once it listens."""
    asyncio.run(_serve(dashboard, address, port, auth, ready, prefix))
