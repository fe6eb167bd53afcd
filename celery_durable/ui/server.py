"""The dashboard's Tornado application and the loop that serves it."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer

from celery_durable.ui import handlers, schedules
from celery_durable.ui.auth import BasicAuth
from celery_durable.ui.dashboard import ACTIONS, Dashboard
from celery_durable.ui.entities_view import EntitiesApi
from celery_durable.ui.metrics import MetricsPage
from celery_durable.ui.security import HostPolicy, body_limit

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


#: threads of the pool for calls that read or replay a whole history (timeline, history)
HEAVY_THREADS = 2
#: threads of the pool for the other calls (lists, an instance, actions)
LIGHT_THREADS = 8


def make_application(dashboard: Dashboard, auth: BasicAuth | None = None,
                     prefix: str = "", *, hosts: HostPolicy | None = None,
                     max_body_bytes: int | None = None) -> tornado.web.Application:
    """The routes, under ``prefix`` (see `url_prefix`): ``/`` (instances), ``/instances/<id>``,
    ``/static/...`` and ``/api/...``; any other path is a JSON 404. ``hosts``: the ``Host``
    names it answers to (default: this machine's loopback names); ``max_body_bytes``: the
    largest body it reads (default: `body_limit` of the store's payload limit)."""
    prefix = url_prefix(prefix)
    if max_body_bytes is None:
        max_body_bytes = body_limit(dashboard.durable.settings.max_payload_bytes)
    common: dict[str, Any] = {"dashboard": dashboard, "auth": auth}
    actions = "|".join(ACTIONS)
    routes: list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]] = [
        (r"/", handlers.Page, {**common, "template": "instances.html"}),
        (rf"/instances/{_ID}", handlers.Page, {**common, "template": "instance.html"}),
        (r"/schedules", handlers.Page, {**common, "template": "schedules.html"}),
        (r"/api/schedules", schedules.SchedulesApi, common),
        (r"/api/config", handlers.ConfigApi, common),
        (r"/api/openapi\.json", handlers.OpenApi, common),
        (r"/entities", handlers.Page, {**common, "template": "entities.html"}),
        (r"/api/entities", EntitiesApi, common),
        (r"/api/instances", handlers.InstancesApi, common),
        (rf"/api/instances/{_ID}", handlers.InstanceApi, common),
        (rf"/api/instances/{_ID}/history", handlers.HistoryApi, common),
        (rf"/api/instances/{_ID}/timeline(\.svg)?", handlers.TimelineApi, common),
        (rf"/api/instances/{_ID}/({actions})", handlers.ActionApi, common),
        (r"/metrics", MetricsPage, common),  # Prometheus (celery_durable.metrics)
    ]
    routed: list[Any] = [(re.escape(prefix) + path, handler, kwargs)
                         for path, handler, kwargs in routes]
    if prefix:  # the prefix alone, as a proxy may pass it on, goes to its page
        routed.append((re.escape(prefix), handlers.PrefixRedirect, {"url": prefix + "/"}))
    executors = {"light": ThreadPoolExecutor(LIGHT_THREADS, "durable-ui"),
                 "heavy": ThreadPoolExecutor(HEAVY_THREADS, "durable-ui-heavy")}
    return tornado.web.Application(
        routed, template_path=str(HERE / "templates"), static_path=str(HERE / "static"),
        static_url_prefix=prefix + "/static/", static_handler_class=handlers.Static,
        default_handler_class=handlers.NotFound, default_handler_args=common,
        url_prefix=prefix, autoescape="xhtml_escape", compress_response=True, xheaders=False,
        host_policy=hosts or HostPolicy.for_address("127.0.0.1"),
        max_body_bytes=max_body_bytes, executors=executors)


def listen(app: tornado.web.Application, port: int, address: str) -> HTTPServer:
    """Serve ``app`` on ``address:port``; bodies over its ``max_body_bytes`` are refused by the
    server itself (chunked ones included), whatever the handler."""
    limit = app.settings["max_body_bytes"]
    server = HTTPServer(app, max_body_size=limit, max_buffer_size=limit + 1024 * 1024,
                        idle_connection_timeout=60, body_timeout=60)
    server.listen(port, address)
    return server


async def _serve(dashboard: Dashboard, address: str, port: int, auth: BasicAuth | None,
                 ready: Callable[[str], None], prefix: str, hosts: HostPolicy | None) -> None:
    app = make_application(dashboard, auth, prefix,
                           hosts=hosts or HostPolicy.for_address(address))
    server = listen(app, port, address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shown = f"[{address}]" if ":" in address else address
    ready(f"http://{shown}:{port}{url_prefix(prefix)}/")
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    for executor in app.settings["executors"].values():
        executor.shutdown(wait=False, cancel_futures=True)


def serve(dashboard: Dashboard, *, address: str = "127.0.0.1", port: int = 5566,
          auth: BasicAuth | None = None, ready: Callable[[str], None] = print,
          prefix: str = "", hosts: HostPolicy | None = None) -> None:
    """Serve the dashboard (under the path ``prefix``) until SIGINT or SIGTERM; ``ready`` gets
    its URL once it listens. ``hosts``: the ``Host`` names it answers to (default: those of
    ``address``, see `HostPolicy.for_address`)."""
    asyncio.run(_serve(dashboard, address, port, auth, ready, prefix, hosts))
