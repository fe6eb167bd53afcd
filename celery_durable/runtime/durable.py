"""``Durable``: the extension object that binds celery_durable to a Celery app."""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps, signals
from sqlalchemy.exc import DBAPIError

from celery_durable.engine import history as h
from celery_durable.errors import (
    ConfigurationError,
    MalformedMessageError,
    OrchestrationNotFoundError,
)
from celery_durable.metrics.worker import EpisodeMetricsStep
from celery_durable.registry import (
    GLOBAL,
    ActivityDef,
    OrchestratorDef,
    Registry,
    make_activity,
    make_orchestrator,
)
from celery_durable.runtime import filesystem, inbound, messages, plain_tasks
from celery_durable.runtime.activity import make_activity_task
from celery_durable.runtime.censor import hide_store_url_in_reports
from celery_durable.runtime.entities import EntityRuntime
from celery_durable.runtime.episode import EpisodeRunner
from celery_durable.runtime.pickle_warning import PickleWarningStep
from celery_durable.runtime.settings import DurableSettings
from celery_durable.runtime.start_queue import StartQueueStep
from celery_durable.runtime.sweeper import SweeperStep, sweep
from celery_durable.runtime.timer_queue import TimerQueueStep
from celery_durable.store import InboxItem, Store, WakeupClaim
from celery_durable.store.engine import dialect_of, masked_url
from celery_durable.store.records import START_TIMER_ID, TIMER_KEY, completion_key
from celery_durable.versioning import VersionFailureStrategy, VersioningOptions, version_queue

if TYPE_CHECKING:
    from celery_durable.client import DurableClient

logger = logging.getLogger(__name__)
_by_app: weakref.WeakKeyDictionary[Celery, Durable] = weakref.WeakKeyDictionary()
#: a rejected wake-up with no version queue to go to is sent again after 1, 2, 4 ... seconds,
#: at most this many times; then the sweeper of a worker that accepts the instance wakes it
REJECT_RESENDS = 7


def durable_of(app: Celery) -> Durable | None:
    """The ``Durable`` bound to ``app``, if any."""
    return _by_app.get(app)


class Durable:
    """Durable orchestrations on a Celery app.

    ``Durable(app, store_url=None, versioning=None)`` reads ``app.conf.durable_*`` settings,
    registers the orchestration, timer and sweep tasks, every ``@orchestrator`` / ``@activity``
    declared so far or later, and a worker bootstep that runs the sweeper.
    """

    def __init__(self, app: Celery, store_url: str | None = None,
                 versioning: VersioningOptions | None = None) -> None:
        if not isinstance(app, Celery):
            raise TypeError(f"Durable(app) takes a Celery app, got {app!r}")
        if versioning is not None and not isinstance(versioning, VersioningOptions):
            raise TypeError(f"versioning must be VersioningOptions, got {versioning!r}")
        filesystem.install()
        hide_store_url_in_reports()
        self.app = app
        # settings are read when first needed, not here: ``Durable(app)`` may come before
        # ``app.config_from_object(...)`` (as in a Django project's proj/celery.py)
        self._store_url = None if store_url is None else _checked_url(store_url)
        self._settings: DurableSettings | None = None
        self._settings_source: Any = None
        self._store: Store | None = None
        self.versioning = versioning or VersioningOptions()
        if app.configured:
            self.settings  # noqa: B018  (a bad setting fails here, not at the first use)
        self.registry = Registry()
        self.runner = EpisodeRunner(self)
        self.entities = EntityRuntime(self)  # durable entities (runtime/entities.py)
        self._client: DurableClient | None = None
        self._register_builtin_tasks()
        self.registry.subscribe(self._on_definition)
        GLOBAL.subscribe(_WeakAdd(self.registry))
        app.steps["worker"].add(SweeperStep)
        app.steps["worker"].add(VersionQueuesStep)
        app.steps["worker"].add(TimerQueueStep)
        app.steps["worker"].add(StartQueueStep)
        app.steps["worker"].add(PickleWarningStep)
        app.steps["worker"].add(EpisodeMetricsStep)  # (celery_durable.metrics.worker)
        _by_app[app] = self

    # -- settings and store -----------------------------------------------------------------------
    @property
    def settings(self) -> DurableSettings:
        """The ``durable_*`` settings of the app, read on first use and again whenever the app
        is configured anew (``app.config_from_object`` replaces ``app.conf``)."""
        conf = self.app.conf
        if self._settings is None or self._settings_source is not conf:
            settings = DurableSettings.from_conf(conf, self._store_url)
            if self._store is not None and settings.store_url != self._store.url:
                raise ConfigurationError(
                    f"the app's durable_store_url changed to {masked_url(settings.store_url)!r} "
                    f"after this Durable had opened its store {masked_url(self._store.url)!r} "
                    "(the app was configured after the store was used): configure the app "
                    "(app.config_from_object / app.conf.update) before the first orchestration "
                    "is scheduled or run, or pass Durable(app, store_url=...)")
            self._settings, self._settings_source = settings, conf
        return self._settings

    @property
    def store(self) -> Store:
        """The store at ``durable_store_url`` (opened on first use)."""
        settings = self.settings  # (raises if the app's store URL changed after first use)
        if self._store is None:
            url = settings.store_url
            if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
                logger.info("the store is %s, a SQLite file relative to the current folder %s "
                            "(processes started elsewhere use another file)", url, os.getcwd())
            self._store = Store(url)
        return self._store

    # -- declaring ----------------------------------------------------------------------------
    def orchestrator(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
                     version: str | None = None, queue: str | None = None,
                     concurrency_limit: int | None = None) -> Any:
        """``@durable.orchestrator``: like ``@orchestrator``, registered on this Durable only."""
        return make_orchestrator(self.registry, fn, name=name, version=version, queue=queue,
                                 concurrency_limit=concurrency_limit)

    def activity(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
                 **options: Any) -> Any:
        """``@durable.activity``: like ``@activity``, registered on this Durable only."""
        return make_activity(self.registry, fn, name=name, **options)

    def _on_definition(self, definition: OrchestratorDef | ActivityDef) -> None:
        if isinstance(definition, ActivityDef):
            make_activity_task(self, definition)
        elif definition.version is not None and not self.versioning.accepts(definition.version):
            logger.warning(
                "orchestrator %r declares version %r, which this Durable's versioning (version "
                "%r, %s) does not run: new instances of it will wait for or fail on other "
                "workers", definition.name, definition.version, self.versioning.version,
                self.versioning.match_strategy.value)

    def _register_builtin_tasks(self) -> None:
        app, runner = self.app, self.runner
        # shared=False: Celery's default would hand these tasks, bound to this Durable, to every
        # app created later in the process
        options = {"bind": True, "shared": False, "acks_late": True,
                   "reject_on_worker_lost": True, "ignore_result": True,
                   "Strategy": inbound.STRATEGY}

        @app.task(name=messages.EPISODE_TASK, **options)
        def episode(task: Any, instance_id: str, name: str = "", rejections: int = 0) -> None:
            """Run an episode of an orchestration instance (woken by a message)."""
            try:
                instance_id, rejections = inbound.episode_args(instance_id, name, rejections)
            except MalformedMessageError as exc:
                logger.error("%s", exc)
                return
            with _store_outage_retried(task, instance_id):
                runner.run(instance_id, wait=True, rejections=rejections)

        @app.task(name=messages.TIMER_TASK, **options)
        def timer(task: Any, instance_id: str, execution_id: str, task_id: int,
                  fire_at: str) -> None:
            """Fire a durable timer: record TimerFired once and run the next episode."""
            try:
                instance_id, execution_id, task_id, fires = inbound.timer_args(
                    instance_id, execution_id, task_id, fire_at)
            except MalformedMessageError as exc:
                logger.error("%s", exc)
                return
            if instance_id.startswith("@"):  # a delayed signal to an entity: it waits
                self.entities.run(instance_id)
                return
            if task_id == START_TIMER_ID:  # a delayed start: its start event waits
                with _store_outage_retried(task, instance_id):
                    runner.run(instance_id, wait=True)
                return
            when = h.utc(fires)
            event = h.timer_fired(task_id, when, datetime.now(timezone.utc))
            item = InboxItem(completion_key(TIMER_KEY, execution_id, task_id), event,
                             execution_id)
            with _store_outage_retried(task, instance_id):
                # as an activity's completion: the episode inline when the lock is free (2
                # statements on PostgreSQL), else the inbox and a coalesced wake-up
                self.record(instance_id, item)

        plain_tasks.register_callbacks(self)
        self.entities.register_task()

        @app.task(name=messages.SWEEP_TASK, bind=True, shared=False, ignore_result=True,
                  Strategy=inbound.STRATEGY)
        def sweep_task(task: Any) -> None:
            """Run one sweep (for deployments that prefer celery beat to the worker bootstep)."""
            sweep(self)

    # -- runtime hooks ------------------------------------------------------------------------
    @property
    def default_version(self) -> str | None:
        return self.versioning.default_version

    def version_for(self, orchestrator: str) -> str | None:
        """The version a new instance of ``orchestrator`` gets when its scheduler names none:
        its ``@orchestrator(version=...)``, else this Durable's ``default_version``."""
        definition = self.registry.orchestrators.get(orchestrator)
        return (definition.version if definition else None) or self.default_version

    @property
    def client(self) -> DurableClient:
        """The ``DurableClient`` of this Durable."""
        if self._client is None:
            from celery_durable.client import DurableClient

            self._client = DurableClient(self)
        return self._client

    def record(self, instance_id: str, item: InboxItem, orchestrator: str = "") -> None:
        """Deliver ``item`` to an instance: run its episode inline, or leave a wake-up (unless
        one is already on its way: wake-ups are coalesced). A completion the instance's code
        does not wait for alone (see `EpisodeRunner.can_wait`) goes to the inbox with a
        wake-up, without an episode of its own."""
        if self.runner.can_wait(instance_id, item):
            if self.store.deliver(instance_id, [item]):
                self.wake(instance_id, orchestrator)
            return
        claim = WakeupClaim()
        if not self.runner.run(instance_id, [item], claim=claim) and claim.claimed:
            self.wake(instance_id, orchestrator)

    def wake(self, instance_id: str, orchestrator: str | None = None) -> None:
        """Send the orchestration task for an instance (its episode drains the inbox)."""
        if not orchestrator:
            record = self.store.get_instance(instance_id)
            if record is None:
                return
            orchestrator = record.name
        messages.publish(self.app, [self.episode_message(instance_id, orchestrator)])

    def episode_message(self, instance_id: str, orchestrator: str) -> messages.Message:
        definition = self.registry.orchestrators.get(orchestrator)
        queue = (definition.queue if definition else None) or self.settings.episode_queue
        return messages.episode_message(instance_id, orchestrator, queue)

    def episode_queue(self, orchestrator: str) -> str:
        """The name of the queue that carries ``orchestrator``'s episodes."""
        definition = self.registry.orchestrators.get(orchestrator)
        return ((definition.queue if definition else None) or self.settings.episode_queue
                or self.app.conf.task_default_queue)

    # -- versioning -----------------------------------------------------------------------------
    def route_rejected(self, instance_id: str, orchestrator: str, version: str | None,
                       rejections: int = 0) -> None:
        """Send on the wake-up of an episode this worker rejected (its events wait in the inbox).

        It goes to the queue of the instance's version, which only workers of that version
        consume. An unversioned instance has no such queue, and a wake-up rejected again was
        misrouted: it goes back after 1, 2, 4 ... seconds, at most ``REJECT_RESENDS`` times;
        after that only the sweeper of a worker that accepts the instance wakes it (the sweepers
        of workers that reject it leave it alone).
        """
        base = self.episode_queue(orchestrator)
        queue = base if version is None else version_queue(base, version)
        if version is not None and rejections == 0:
            countdown = None
        elif rejections < REJECT_RESENDS:
            countdown = float(2 ** rejections)
        else:
            logger.info("instance %s (orchestrator %r, version %r) waits for a worker that "
                        "accepts it; the sweeper of such a worker will wake it", instance_id,
                        orchestrator, version)
            return
        message = messages.episode_message(instance_id, orchestrator, queue,
                                           countdown=countdown, rejections=rejections + 1)
        try:
            messages.publish(self.app, [message])
        except Exception:  # the events stay in the inbox: an accepting worker's sweeper wakes it
            logger.exception("could not send on the rejected wake-up of instance %s", instance_id)

    def versions_left_to_others(self, older_than: datetime) -> list[str | None]:
        """Versions of the instances waiting in the inbox (since before ``older_than``) that this
        worker rejects: its sweeper leaves them to workers that accept them."""
        versioning = self.versioning
        if not versioning.rejects_some:
            return []
        return [v for v in self.store.inbox_versions(older_than) if versioning.rejects(v)]

    def names_left_to_others(self) -> list[str] | None:
        """The orchestrators whose waiting instances this worker's sweeper may wake: those it
        knows when its failure strategy is REJECT (it would only bounce the others, scheduled
        by name for workers that import their code); None: every one."""
        if self.versioning.failure_strategy is not VersionFailureStrategy.REJECT:
            return None
        return sorted(self.registry.orchestrators)

    def version_queues(self, consumed: Iterable[str]) -> list[str]:
        """The version queues a worker consuming ``consumed`` also consumes: this Durable's
        version's queue of each episode queue among them."""
        version = self.versioning.version
        if version is None:
            return []
        episode_queues = {self.settings.episode_queue or self.app.conf.task_default_queue}
        episode_queues.update(d.queue for d in self.registry.orchestrators.values() if d.queue)
        return sorted(version_queue(q, version) for q in episode_queues.intersection(consumed))


def _checked_url(url: str) -> str:
    """``url``, or ValueError (its password masked) if it names no store we support."""
    dialect_of(url)
    return url


@contextlib.contextmanager
def _store_outage_retried(task: Any, instance_id: str) -> Iterator[None]:
    """Retry the task while the database is unreachable; drop it for a purged instance."""
    try:
        yield
    except OrchestrationNotFoundError:
        logger.info("%s: orchestration %s no longer exists (purged)", task.name, instance_id)
    except DBAPIError as exc:
        delay = min(2.0 ** task.request.retries, 30.0)
        logger.warning("%s for %s: database error (%s); retrying in %.0fs", task.name,
                       instance_id, exc.orig, delay)
        raise task.retry(exc=exc, countdown=delay, max_retries=None) from exc


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _flush_outbox_acks(**_: Any) -> None:
    """Delete the outbox rows this process published and has not deleted yet (else the sweeper
    would re-publish them after its recovery grace: harmless duplicates, but needless)."""
    for durable in list(_by_app.values()):
        durable.store.outbox_acks.flush()


class VersionQueuesStep(bootsteps.Step):
    """Worker bootstep: a worker of a version also consumes that version's queue of every episode
    queue it consumes (``celery.v2`` next to ``celery``), with or without ``-Q``."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        durable = durable_of(worker.app)
        if durable is None:
            return
        queues = worker.app.amqp.queues
        for name in durable.version_queues(queues.consume_from):
            queues.select_add(name)


class _WeakAdd:
    """Forwards global definitions to a Durable's registry without keeping it alive."""

    def __init__(self, registry: Registry) -> None:
        self._ref = weakref.ref(registry)

    def __call__(self, definition: OrchestratorDef | ActivityDef) -> None:
        registry = self._ref()
        if registry is not None:
            registry.add(definition)
