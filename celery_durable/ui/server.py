"""The dashboard's Tornado application and the loop that serves it."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web

from celery_durable.ui import handlers
from celery_durable.ui.auth import BasicAuth
from celery_durable.ui.dashboard import ACTIONS, Dashboard

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
_ID = r"([^/]+)"


def make_application(dashboard: Dashboard, auth: BasicAuth | None = None) -> tornado.web.Application:
    """The routes: ``/`` (instances), ``/instances/<id>``, ``/static/...`` and ``/api/...``."""
    common: dict[str, Any] = {"dashboard": dashboard, "auth": auth}
    actions = "|".join(ACTIONS)
    routes: list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]] = [
        (r"/", handlers.Page, {**common, "template": "instances.html"}),
        (rf"/instances/{_ID}", handlers.Page, {**common, "template": "instance.html"}),
        (r"/api/config", handlers.ConfigApi, common),
        (r"/api/instances", handlers.InstancesApi, common),
        (rf"/api/instances/{_ID}", handlers.InstanceApi, common),
        (rf"/api/instances/{_ID}/history", handlers.HistoryApi, common),
        (rf"/api/instances/{_ID}/timeline(\.svg)?", handlers.TimelineApi, common),
        (rf"/api/instances/{_ID}/({actions})", handlers.ActionApi, common),
    ]
    return tornado.web.Application(
        routes, template_path=str(HERE / "templates"), static_path=str(HERE / "static"),
        autoescape="xhtml_escape", compress_response=True, xheaders=False)


async def _serve(dashboard: Dashboard, address: str, port: int, auth: BasicAuth | None,
                 ready: Callable[[str], None]) -> None:
    app = make_application(dashboard, auth)
    server = app.listen(port, address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready(f"http://{address}:{port}/")
    await stop.wait()
    server.stop()
    await server.close_all_connections()


def serve(dashboard: Dashboard, *, address: str = "127.0.0.1", port: int = 5566,
          auth: BasicAuth | None = None, ready: Callable[[str], None] = print) -> None:
    """Serve the dashboard until SIGINT or SIGTERM; ``ready`` gets its URL once it listens."""
    asyncio.run(_serve(dashboard, address, port, auth, ready))
