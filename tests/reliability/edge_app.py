"""The app ``celery -A edge_app worker`` loads for the bad-input, race and timer tests.

Configured by environment variables (so that the test's client builds the same app):
``EDGE_BROKER`` (broker URL), ``EDGE_STORE`` (store URL), ``EDGE_QUEUE`` (queue of every task)
and ``EDGE_CONF`` (JSON of further settings: ``durable_*``, ``accept_content``...).
"""

from __future__ import annotations

import json
import os
from typing import Any

import edge_workflows  # noqa: F401  (registers the orchestrators and activities)
from celery import Celery
from workers import LazyApp, celery_app

from celery_durable import Durable


def make_app(broker_url: str, store_url: str, queue: str, conf: dict[str, Any],
             name: str = "edge") -> tuple[Celery, Durable]:
    app = celery_app(name, broker_url, queue, **conf)
    return app, Durable(app, store_url=store_url)


def env_config(broker_url: str, store_url: str, queue: str,
               conf: dict[str, Any]) -> dict[str, str]:
    return {"EDGE_BROKER": broker_url, "EDGE_STORE": store_url, "EDGE_QUEUE": queue,
            "EDGE_CONF": json.dumps(conf)}


def _from_environment() -> tuple[Celery, Durable]:
    return make_app(os.environ["EDGE_BROKER"], os.environ["EDGE_STORE"], os.environ["EDGE_QUEUE"],
                    json.loads(os.environ.get("EDGE_CONF") or "{}"), name="edge-worker")


__getattr__ = LazyApp(__name__, _from_environment)
