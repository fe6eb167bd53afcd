"""The exporter's HTTP server (standard library): ``GET /metrics`` answers a scrape, ``GET /``
points to it; with basic auth, every request without the credentials gets 401."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from celery_durable.metrics.source import MetricsSource
from celery_durable.ui.auth import BasicAuth

logger = logging.getLogger(__name__)


def make_server(source: MetricsSource, address: str, port: int,
                auth: BasicAuth | None = None) -> ThreadingHTTPServer:
    """A server (not yet serving) of ``source`` on ``address:port`` (port 0: any free one)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "celery-durable-metrics"

        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            if auth is not None and not auth.accepts(self.headers.get("Authorization")):
                self._answer(401, b"authentication required: this exporter was started with "
                                  b"--basic-auth\n",
                             extra={"WWW-Authenticate": 'Basic realm="celery_durable"'})
                return
            path = urlsplit(self.path).path
            if path == "/metrics":
                try:
                    body = source.scrape()
                except Exception:
                    logger.exception("a scrape failed")
                    self._answer(500, b"the scrape failed: see the exporter's log\n")
                    return
                self._answer(200, body, source.content_type)
            elif path == "/":
                self._answer(200, b"<html><body><a href=\"metrics\">metrics</a></body></html>",
                             "text/html; charset=utf-8")
            else:
                self._answer(404, b"not found: the metrics are at /metrics\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8",
                    extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    return server


def serve(source: MetricsSource, *, address: str = "127.0.0.1", port: int = 9808,
          auth: BasicAuth | None = None, ready: Callable[[str], None] = print) -> None:
    """Serve ``source`` until SIGINT or SIGTERM; ``ready`` gets the metrics' URL."""
    server = make_server(source, address, port, auth)

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    ready(f"http://{address}:{server.server_address[1]}/metrics")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        source.close()
