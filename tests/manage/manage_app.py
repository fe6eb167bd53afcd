"""The app ``celery -A manage_app worker`` loads (configured like `crash_points`, whose
environment variables it reads), with one crash point of its own: ``send-event-loaded`` (the
worker dies while the episode that sends an event has written it, before its transaction
commits) or ``send-event-committed`` (after the commit, before its messages are published)."""

from __future__ import annotations

import json
import os
from typing import Any

import manage_workflows  # noqa: F401  (registers the orchestrators and activities)
from celery import Celery
from crash_points import ENV_POINT, always, make_app, wrap
from workers import LazyApp

from celery_durable import Durable
from celery_durable.engine import history as h
from celery_durable.runtime import episode
from celery_durable.store import episode as store_episode


def sends_an_event(_ep: Any, outcome: Any, **_: Any) -> bool:
    return any(e.kind == h.EVENT_SENT for e in outcome.new_events)


def publishes_a_sent_event(_runner: Any, outbox: list[Any], ids: list[int]) -> bool:
    return bool(ids) and any(m.get("args", [None])[0] == os.environ.get("MANAGE_TARGET")
                             for m in outbox)


def install(point: str) -> None:
    if point == "send-event-loaded":
        wrap(store_episode.Episode, "commit", after=sends_an_event)
    elif point == "send-event-committed":
        wrap(episode.EpisodeRunner, "_publish", before=publishes_a_sent_event)
    else:
        raise ValueError(f"unknown crash point {point!r}")


def _from_environment() -> tuple[Celery, Durable]:
    if os.environ.get(ENV_POINT):
        install(os.environ[ENV_POINT])
    return make_app(os.environ["CRASH_BROKER"],
                    json.loads(os.environ.get("CRASH_BROKER_OPTIONS") or "{}"),
                    os.environ["CRASH_STORE"], os.environ["CRASH_QUEUE"],
                    json.loads(os.environ.get("CRASH_CONF") or "{}"), name="manage-worker")


__getattr__ = _lazy = LazyApp(__name__, _from_environment)
_ = always
