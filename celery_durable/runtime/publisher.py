"""`Publisher`: sends our outbox messages as ``app.send_task`` would, for less work a message.

The message is built by Celery itself (``app.amqp.create_task_message``: protocol 2 headers,
properties and body, ``argsrepr``, the ``task-sent`` event when ``task_send_sent_event`` is on)
and sent by Celery's own sender (``app.amqp.send_task_message``: ``before_task_publish``,
``after_task_publish``, ``task_sent``, the retry policy), with the parent's ``root_id`` /
``parent_id`` (and priority, with ``task_inherit_parent_priority``) and the result backend's
``on_task_call`` as ``send_task`` does. What it saves, per message:

- the route: with ``task_routes`` made of mappings only (they depend on the task's name and
  nothing else), the routed options are computed once per (task, queue);
- the queue's declaration: kombu declares a queue once per connection but, before looking in
  its cache, binds a copy of the queue to the channel; this looks in the same cache first;
- ``argsrepr`` of small scalar arguments (what `saferepr` gives them, without its machinery).

Messages with options it does not take (``eta``, ``countdown``, ``expires``, ``link``...), apps
on another message protocol and app classes with a ``send_task`` of their own go through
``app.send_task`` unchanged.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from celery import Celery
from celery.app.routes import MapRoute
from kombu import Queue
from kombu.common import Broadcast
from kombu.utils.uuid import uuid

from celery_durable import tracing

Message = dict[str, Any]

#: Most messages one publish batch buffers before it sends them (see `Publisher.publish`).
BATCH = 500
#: options whose values decide a message's route (part of the route cache's key)
_ROUTING = ("queue", "exchange", "routing_key")
#: options the quick path passes on as ``send_task`` would; any other sends through it
_QUICK = frozenset({"task_id", "headers", "argsrepr", "kwargsrepr", "priority", "serializer",
                    "delivery_mode", "compression", "time_limit", "soft_time_limit",
                    "immediate", "mandatory", *_ROUTING})
#: longest string argument given its ``repr`` as ``argsrepr`` (saferepr shortens longer ones)
_SHORT = 64
_BIG = 10**15


class Publisher:
    """Publishes messages ``{"task", "args", "kwargs", "options"}`` on one Celery app."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._routes: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._router: Any = None
        self._cacheable = False
        self._exec_options: dict[str, dict[str, Any]] = {}
        # read once, as Celery's own sender reads its settings (app.amqp.send_task_message)
        conf = app.conf
        self._quick = conf.task_protocol == 2 and _celerys_send_task(app)
        self._sent_event = conf.task_send_sent_event
        self._inherit_priority = conf.task_inherit_parent_priority

    def publish(self, messages: Iterable[Message]) -> None:
        """Send ``messages`` through one pooled producer; several at once in kombu's publish
        batches (``Producer.batch``: on Redis one pipeline per `BATCH` messages instead of a
        round trip each; transports without batches publish each at once). Should a batch
        fail, nothing tells which messages went: the caller keeps its outbox rows and the
        sweeper publishes them again."""
        messages = list(messages)
        if not messages:
            return
        app = self.app
        with app.producer_or_acquire() as producer:
            batching = len(messages) > 1 and hasattr(producer, "batch")  # kombu 5.7 and later
            with producer.batch(BATCH) if batching else contextlib.nullcontext():
                for message in messages:
                    given = message.get("options") or {}
                    options = {**self._task_options(message["task"]), **given}
                    with tracing.sending(given.get("headers")):
                        if self._quick and _QUICK.issuperset(options):
                            self._send(producer, message, options)
                        else:
                            _send_task(app, producer, message, given)

    def _send(self, producer: Any, message: Message, options: dict[str, Any]) -> None:
        """``app.send_task`` for a message whose options (the task's own merged in) are all
        in `_QUICK`."""
        app, amqp = self.app, self.app.amqp
        name = message["task"]
        args = message.get("args") or []
        kwargs = message.get("kwargs") or {}
        task_id = options.pop("task_id", None) or uuid()
        time_limit = options.pop("time_limit", None)
        soft_time_limit = options.pop("soft_time_limit", None)
        options.pop("serializer", None)  # JSON whatever the task's: workers refuse anything else
        # routed options under the given ones, as send_task's lpmerge (None does not override)
        options = {**self._route(name, options, args, kwargs),
                   **{k: v for k, v in options.items() if k not in _ROUTING and v is not None}}
        root_id = parent_id = None
        parent = app.current_worker_task
        if parent is not None:
            request = parent.request
            root_id, parent_id = request.root_id or request.id, request.id
            if self._inherit_priority:
                options.setdefault("priority", request.delivery_info.get("priority"))
        building = {"argsrepr": _argsrepr(args), "kwargsrepr": None if kwargs else "{}",
                    **options}
        task_message = amqp.create_task_message(
            task_id, name, args, kwargs, None, None, None, None, None, 0, None, None, None,
            app.thread_oid, time_limit, soft_time_limit, self._sent_event,
            root_id, parent_id, None, None, ignore_result=None, **building)
        with producer.connection._reraise_as_library_errors():
            app.backend.on_task_call(producer, task_id)
            amqp.send_task_message(producer, name, task_message, serializer="json",
                                   declare=_declare(producer, options.get("queue")), **options)
        if parent is not None and parent.trail:  # the result backend's "children" of the parent
            parent.add_trail(app.AsyncResult(task_id))

    def _task_options(self, name: str) -> dict[str, Any]:
        """The execution options of the task registered as ``name`` (``send_task``'s defaults,
        which Celery caches on the task too)."""
        cached = self._exec_options.get(name)
        if cached is None:
            task = self.app._tasks.get(name)
            get = getattr(task, "_get_exec_options", None)
            if not callable(get):  # not registered (yet): nothing kept
                return {}
            cached = self._exec_options[name] = {k: v for k, v in (get() or {}).items()
                                                 if v is not None}
        return cached

    def _route(self, name: str, options: dict[str, Any], args: Any, kwargs: Any
               ) -> dict[str, Any]:
        """The routed options (queue, exchange...) of a message, cached when every router is a
        mapping (a function of the task's name and the options given)."""
        router = self.app.amqp.router
        if router is not self._router:
            self._routes.clear()
            self._router = router
            self._cacheable = all(isinstance(r, MapRoute) for r in router.routes)
        key = (name, options.get("queue"), options.get("exchange"), options.get("routing_key"))
        routed = self._routes.get(key) if self._cacheable else None
        if routed is None:
            given = {k: options[k] for k in _ROUTING if k in options}
            routed = router.route(given, name, args, kwargs, self.app._tasks.get(name))
            if self._cacheable:
                self._routes[key] = routed
        return routed


def _celerys_send_task(app: Celery) -> bool:
    """Whether ``app.send_task`` is Celery's own: an app class with one of its own (such as
    celery_durable.testing's) or a wrapper patched in (an SDK's tracing) must see every message."""
    send_task = type(app).send_task
    return (getattr(send_task, "__module__", None) == Celery.__module__
            and getattr(send_task, "__qualname__", None) == "Celery.send_task"
            and not hasattr(send_task, "__wrapped__"))


def _declare(producer: Any, queue: Any) -> list[Any] | None:
    """``[]`` when ``queue`` is declared on the producer's connection already (kombu's own
    cache, cleared when it reconnects), else None: Celery's sender declares it."""
    if isinstance(queue, Queue) and not isinstance(queue, Broadcast):
        connection = producer.connection
        declared = getattr(connection, "declared_entities", None)
        if declared is not None and queue.can_cache_declaration and hash(queue) in declared:
            return []
    return None


def _argsrepr(args: list[Any]) -> str | None:
    """``repr(args)`` for a few small scalars (what `saferepr` writes for them), else None
    (Celery then computes it)."""
    if len(args) <= 4 and all(_plain(a) for a in args):
        return repr(args)
    return None


def _plain(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= _SHORT and value.isprintable() and "'" not in value \
            and "\\" not in value
    if isinstance(value, int):  # bool too
        return -_BIG < value < _BIG
    return value is None or isinstance(value, float)


def _send_task(app: Celery, producer: Any, message: Message, given: dict[str, Any]) -> None:
    options = dict(given)
    if "eta" in options:
        options["eta"] = datetime.fromisoformat(options["eta"])
    # JSON whatever the app's task_serializer: workers refuse anything else
    app.send_task(message["task"], args=message.get("args") or [],
                  kwargs=message.get("kwargs") or {}, producer=producer, serializer="json",
                  **options)


_PUBLISHERS: weakref.WeakKeyDictionary[Celery, Publisher] = weakref.WeakKeyDictionary()


def publisher(app: Celery) -> Publisher:
    """The `Publisher` of ``app`` (one per app, kept as long as the app)."""
    found = _PUBLISHERS.get(app)
    if found is None:
        found = _PUBLISHERS[app] = Publisher(app)
    return found
