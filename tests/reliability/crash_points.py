"""The app ``celery -A crash_points worker`` loads: the crash-point tests' worker.

At import it wraps one of the runtime's functions, chosen by ``CRASH_POINT``, so that the worker
process dies (``os._exit(1)``, no cleanup, no ack) the first time execution reaches that point;
the file ``CRASH_MARKER`` is created then, and a worker that finds it does not crash again.
Production code has no switch for this: the wrappers replace module attributes, as a debugger
would. Without ``CRASH_POINT`` the app is a plain worker.

Configured like `edge_app`: ``CRASH_BROKER``, ``CRASH_BROKER_OPTIONS`` (JSON), ``CRASH_STORE``,
``CRASH_QUEUE``, ``CRASH_CONF`` (JSON of further settings).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from typing import Any

import crash_workflows  # noqa: F401  (registers the orchestrators and activities)
from celery import Celery
from workers import LazyApp, celery_app

from celery_durable import Durable
from celery_durable.engine import history as h
from celery_durable.runtime import activity, durable, episode, inbound
from celery_durable.store import Store
from celery_durable.store import episode as store_episode

ENV_POINT, ENV_MARKER = "CRASH_POINT", "CRASH_MARKER"


def make_app(broker_url: str, broker_options: dict[str, Any], store_url: str, queue: str,
             conf: dict[str, Any], name: str = "crash") -> tuple[Celery, Durable]:
    app = celery_app(name, broker_url, queue, broker_transport_options=broker_options, **conf)
    return app, Durable(app, store_url=store_url)


def env_config(broker_url: str, broker_options: dict[str, Any], store_url: str, queue: str,
               conf: dict[str, Any]) -> dict[str, str]:
    return {"CRASH_BROKER": broker_url, "CRASH_BROKER_OPTIONS": json.dumps(broker_options),
            "CRASH_STORE": store_url, "CRASH_QUEUE": queue, "CRASH_CONF": json.dumps(conf)}


def crash() -> None:
    """Die here unless the marker says this point was reached before.

    Outbox rows already published are deleted first, as this process would have deleted them
    half a second later (`OutboxAcks`): what recovers the instance must not depend on whether
    the crash came before that (the sweeper would re-publish a row still there).
    """
    try:
        fd = os.open(os.environ[ENV_MARKER], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, os.environ[ENV_POINT].encode())
    os.close(fd)
    if _lazy.built is not None:
        _lazy.built[1].store.outbox_acks.flush()
    os._exit(1)


def wrap(owner: Any, name: str, before: Callable[..., bool] | None = None,
         after: Callable[..., bool] | None = None) -> None:
    """Replace ``owner.name`` by a wrapper that crashes before (or after) calling it when
    ``before(*args, **kwargs)`` (``after(*args, **kwargs)``) is true."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None and before(*args, **kwargs):
            crash()
        result = original(*args, **kwargs)
        if after is not None and after(*args, **kwargs):
            crash()
        return result

    setattr(owner, name, wrapper)


def always(*_: Any, **__: Any) -> bool:
    return True


def is_task_completion(_durable: Any, _instance_id: str, item: Any, *_: Any) -> bool:
    return bool(item.event.kind == h.TASK_COMPLETED)


def consumes_a_completion(ep: Any, _outcome: Any, **_: Any) -> bool:
    return any(row.event.kind == h.TASK_COMPLETED for row in ep.inbox)


def is_a_timer(_instance_id: Any, _execution_id: Any, task_id: Any, _fire_at: Any) -> bool:
    return bool(isinstance(task_id, int) and task_id >= 0)


def has_messages(_runner: Any, outbox: list[Any], ids: list[int]) -> bool:
    return bool(ids)


_final = threading.local()


def notes_a_childs_final_commit(ep: Any, outcome: Any, **_: Any) -> bool:
    """After a commit: note whether it ended a child (it wrote its parent's inbox)."""
    _final.child = (outcome.status_value() in ("COMPLETED", "FAILED", "TERMINATED")
                    and ep.instance.parent_instance_id is not None)
    return False


def after_a_childs_final_commit(*_: Any) -> bool:
    return bool(getattr(_final, "child", False))


def crash_after_the_sweeper_claims_timers() -> None:
    """The sweeper marked far timers dispatched (its claim) and has not sent them yet."""
    original = Store.mark_timers_dispatched

    def mark_timers_dispatched(self: Store, *args: Any, **kwargs: Any) -> Any:
        claimed = original(self, *args, **kwargs)
        if claimed and threading.current_thread().name == "celery_durable-sweeper":
            crash()
        return claimed

    Store.mark_timers_dispatched = mark_timers_dispatched  # type: ignore[method-assign]


def install(point: str) -> None:
    """Wrap the runtime function of crash point ``point``."""
    if point == "activity-start":  # the orchestrated run reads its header first
        wrap(inbound, "activity_header", before=always)
    elif point == "activity-done":  # the function returned; its completion is built next
        wrap(activity, "completion_item", before=always)
    elif point == "completion-recorded":  # recorded (and the episode run inline), not acked
        wrap(durable.Durable, "record", after=is_task_completion)
    elif point == "episode-loaded":  # locked and loaded an episode consuming a completion
        wrap(store_episode.Episode, "commit", before=consumes_a_completion)
    elif point == "episode-committed":  # committed, its outbox not published
        wrap(episode.EpisodeRunner, "_publish", before=has_messages)
    elif point == "timer-dispatch":  # a timer's message arrived; TimerFired not recorded
        wrap(inbound, "timer_args", before=is_a_timer)
    elif point == "sweeper-timer-claimed":  # a far timer claimed by the sweeper, not sent
        crash_after_the_sweeper_claims_timers()
    elif point == "child-final-commit":  # a child ended and committed; the parent not woken
        wrap(store_episode.Episode, "commit", after=notes_a_childs_final_commit)
        wrap(episode.EpisodeRunner, "_publish", before=after_a_childs_final_commit)
    else:
        raise ValueError(f"unknown crash point {point!r}")


POINTS = ["activity-start", "activity-done", "completion-recorded", "episode-loaded",
          "episode-committed", "timer-dispatch", "sweeper-timer-claimed", "child-final-commit"]
#: settings a point needs: the sweeper dispatches only timers beyond the horizon
POINT_CONF: dict[str, dict[str, Any]] = {"sweeper-timer-claimed": {"durable_timer_horizon": 0}}


def _from_environment() -> tuple[Celery, Durable]:
    if os.environ.get(ENV_POINT):
        install(os.environ[ENV_POINT])
    return make_app(os.environ["CRASH_BROKER"],
                    json.loads(os.environ.get("CRASH_BROKER_OPTIONS") or "{}"),
                    os.environ["CRASH_STORE"], os.environ["CRASH_QUEUE"],
                    json.loads(os.environ.get("CRASH_CONF") or "{}"), name="crash-worker")


__getattr__ = _lazy = LazyApp(__name__, _from_environment)
