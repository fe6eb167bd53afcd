"""The app ``celery -A chaos_app worker`` loads for the chaos, lost-message and restart tests.

Configured by the environment variables of ``edge_app`` (``EDGE_BROKER``, ``EDGE_STORE``,
``EDGE_QUEUE``, ``EDGE_CONF``); ``CHAOS_RUNS_URL`` names the database where activities count
their runs (see ``chaos_workflows``).
"""

from __future__ import annotations

import json
import os

import chaos_workflows  # noqa: F401  (registers the orchestrators and activities)
from celery import Celery
from edge_app import make_app
from workers import LazyApp

from celery_durable import Durable


def _from_environment() -> tuple[Celery, Durable]:
    return make_app(os.environ["EDGE_BROKER"], os.environ["EDGE_STORE"], os.environ["EDGE_QUEUE"],
                    json.loads(os.environ.get("EDGE_CONF") or "{}"), name="chaos-worker")


__getattr__ = LazyApp(__name__, _from_environment)
