"""`DurableTestEnv`: run orchestrations in the test's own process, with a clock the test controls.

The environment is a real ``Durable`` on a real store (SQLite in a temporary folder unless told
otherwise) whose Celery app keeps its messages in the process instead of sending them to a
broker: the environment delivers them itself, through the very tasks a worker would run
(episodes, timers, activities, executed eagerly with ``Task.apply``). Only two things differ
from a deployment:

- **Time** is a test clock. Every episode runs at the clock's time (`EpisodeRunner.run` takes
  ``now``; the engine stays a pure function of it). The clock moves only when the test waits
  for an orchestration (then it jumps to the next due timer as soon as nothing else can
  progress) or calls `DurableTestEnv.advance`.
- **Activities** can be replaced for one test (`DurableTestEnv.mock_activity`).

It is also a `DurableClient`: the same methods, which here deliver what they cause before they
return.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import Celery

from celery_durable.client import DurableClient, to_state
from celery_durable.engine.context import name_of
from celery_durable.engine.history import utc
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import DurableError, UnknownNameError
from celery_durable.registry import ActivityDef
from celery_durable.runtime import plain_tasks
from celery_durable.runtime.activity import ActivityContext, ActivityFailed
from celery_durable.runtime.durable import Durable, durable_of
from celery_durable.runtime.messages import DURABLE_HEADER, TASK_FAILED, TASK_SUCCEEDED
from celery_durable.runtime.sweeper import sweep
from celery_durable.state import OrchestrationState
from celery_durable.testing.clock import ClockedRunner, TestClock
from celery_durable.testing.mocks import UNSET, ActivityMock, install
from celery_durable.versioning import VersioningOptions

#: where the search for the next timer ends (no timer is due later than this)
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=timezone.utc)


class _InProcessDurable(Durable):
    """A `Durable` whose tasks (episode, timer, activities) run episodes on the test clock."""

    def __init__(self, app: Celery, store_url: str, versioning: VersioningOptions,
                 clock: TestClock) -> None:
        self._clock = clock
        super().__init__(app, store_url=store_url, versioning=versioning)

    def _register_builtin_tasks(self) -> None:
        # the episode and timer tasks take the runner as they are registered
        self.runner = ClockedRunner(self, self._clock)
        self.entities.now = self._clock.now
        super()._register_builtin_tasks()


@dataclass(frozen=True, order=True)
class _Scheduled:
    due: datetime
    order: int
    message: dict[str, Any] = field(compare=False)


class _InProcessApp(Celery):
    """A Celery app that sends nothing: its messages go to the environment's queue."""

    def __init__(self, post: Callable[[dict[str, Any]], None]) -> None:
        super().__init__("celery_durable.testing", broker="memory://", set_as_current=False)
        self._post = post

    def producer_or_acquire(self, producer: Any = None) -> Any:
        return contextlib.nullcontext(producer)

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        options.pop("producer", None)
        self._post({"task": name, "args": list(args or ()), "kwargs": dict(kwargs or {}),
                    "options": options})
        return None


class DurableTestEnv(DurableClient):
    """An in-process environment for testing orchestrations; also their `DurableClient`.

    ``DurableTestEnv(store_url=None, *, app=None, start=None, purge_on_close=None)``:

    - ``store_url``: the store (default: SQLite in a temporary folder, removed by `close`);
    - ``app``: a Celery app with a ``Durable``, or a ``Durable``: the orchestrators and
      activities registered on it, and its versioning, join the module-level ``@orchestrator``
      / ``@activity`` ones;
    - ``start``: the clock's initial time (default: now);
    - ``purge_on_close``: purge the instances started here when the environment closes
      (default: when ``store_url`` is given).

    Use it as a context manager, or call `close`.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, store_url: str | None = None, *, app: Celery | Durable | None = None,
                 start: datetime | None = None, purge_on_close: bool | None = None) -> None:
        self.purge_on_close = store_url is not None if purge_on_close is None else purge_on_close
        self._folder: str | None = None
        if store_url is None:
            self._folder = tempfile.mkdtemp(prefix="celery-durable-test-")
            store_url = f"sqlite:///{self._folder}/durable.sqlite3"
        self.clock = TestClock(start)
        self._ready: deque[dict[str, Any]] = deque()
        self._later: list[_Scheduled] = []
        self._order = itertools.count()
        self._real: dict[str, ActivityDef | None] = {}
        self._scheduled_ids: list[str] = []
        user = _user_durable(app)
        #: the user's app: the Celery tasks that ctx.call_task runs here are looked up on it
        self.user_app = user.app if user is not None else None
        self.app = _InProcessApp(self._post)
        self.app.conf.update(durable_sweeper_enabled=False, task_ignore_result=True)
        if user is not None:  # the bounds of local activities are the user's
            self.app.conf.update({key: value for key, value in user.app.conf.items()
                                  if key.startswith("durable_local_activity_")})
        versioning = user.versioning if user is not None else VersioningOptions()
        durable = _InProcessDurable(self.app, store_url, versioning, self.clock)
        if user is not None:
            # (the module-level definitions, which both have, are there already)
            for orchestrator in user.registry.orchestrators.values():
                if durable.registry.orchestrators.get(orchestrator.name) is not orchestrator:
                    durable.registry.add(orchestrator)
            for activity in user.registry.activities.values():
                if durable.registry.activities.get(activity.name) is not activity:
                    durable.registry.add(activity)
        durable.store.create_schema()
        super().__init__(durable)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Purge the instances started here (if ``purge_on_close``) and release the store."""
        try:
            if self.purge_on_close:
                self._purge_started()
        finally:
            self.store.outbox_acks.flush()  # (now: its timed flush would find no folder)
            self.store.dispose()
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> DurableTestEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _purge_started(self) -> None:
        self._ready.clear()  # left by a test that failed half-way
        self._later.clear()
        for instance_id in self._scheduled_ids:
            record = self.store.get_instance(instance_id)
            if record is None:
                continue
            if not record.status.is_terminal:
                super().terminate_orchestration(instance_id, output="test ended")
                self.run_until_idle()
            with contextlib.suppress(DurableError):  # purged by the test, or a child still runs
                self.store.purge(instance_id, recursive=True)

    # -- time ----------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        """The test clock's current time (what ``ctx.current_utc_datetime`` sees)."""
        return self.clock.now()

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``, firing every timer due on the way, in order, each
        at its own time, and running what they cause."""
        if not isinstance(delta, timedelta) or delta < timedelta(0):
            raise ValueError(f"advance() takes a non-negative timedelta, got {delta!r}")
        target = self.now + delta
        self.run_until_idle()
        while (due := self._next_due()) is not None and due <= target:
            self._move_clock(due)
        self._move_clock(target)

    def simulate_outage(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta`` as if no worker ran meanwhile (nothing fires on
        the way: no timer, no schedule tick), then let the workers come back: one sweep at the
        new time starts what is due, per each schedule's catch-up window and overlap policy."""
        if not isinstance(delta, timedelta) or delta < timedelta(0):
            raise ValueError(f"simulate_outage() takes a non-negative timedelta, got {delta!r}")
        self.run_until_idle()
        self._move_clock(self.now + delta)

    def _schedule_clock(self) -> datetime:
        return self.now

    def run_until_idle(self) -> None:
        """Deliver every message that is due at the current time, and what they cause, until
        nothing is left to do without moving the clock."""
        while self._ready:
            self._deliver(self._ready.popleft())

    def _next_due(self) -> datetime | None:
        """When the earliest pending timer (or delayed message) is due, or None."""
        candidates = [self._later[0].due] if self._later else []
        # timers beyond the horizon wait in the store, as they do for the sweeper
        candidates += [t.fire_at for t in self.store.due_timers(_END_OF_TIME, 1)]
        # (and the schedules' next ticks, which the sweeper fires)
        candidates += [s.next_run_at for s in self.store.schedules.list()
                       if s.next_run_at is not None and not s.paused]
        return min(candidates, default=None)

    def _move_clock(self, when: datetime) -> None:
        self.clock.move_to(when)
        sweep(self.durable, now=self.now)  # dispatches the store's timers that are now near
        while self._later and self._later[0].due <= self.now:
            self._ready.append(heapq.heappop(self._later).message)
        self.run_until_idle()

    # -- messages ------------------------------------------------------------------------------
    def _post(self, message: dict[str, Any]) -> None:
        options = message["options"]
        due = None
        if options.get("eta") is not None:
            due = utc(options["eta"])
        elif options.get("countdown"):
            due = self.now + timedelta(seconds=float(options["countdown"]))
        if due is None or due <= self.now:
            self._ready.append(message)
        else:
            heapq.heappush(self._later, _Scheduled(due, next(self._order), message))

    def _deliver(self, message: dict[str, Any]) -> None:
        """Run the message's task here, as a worker would (an activity's failure is an outcome
        the orchestration handles; any other error is the test's)."""
        options = message["options"]
        if "link_error" in options:
            self._run_celery_task(message)
            return
        task = self.app.tasks[message["task"]]
        result = task.apply(args=message["args"], kwargs=message["kwargs"],
                            task_id=options.get("task_id"), headers=options.get("headers"))
        if result.failed() and not isinstance(result.result, ActivityFailed):
            raise result.result

    def _run_celery_task(self, message: dict[str, Any]) -> None:
        """Run the Celery task of a ``ctx.call_task`` eagerly (``Task.apply``: its own retries
        run at once) and record its result or final failure, as its link callbacks would."""
        name, options = message["task"], message["options"]
        task = self._celery_task(name)
        header = options["headers"][DURABLE_HEADER]
        result = task.apply(args=message["args"], kwargs=message["kwargs"],
                            task_id=options.get("task_id"), headers=options.get("headers"))
        if result.successful():
            plain_tasks.record_success(self.durable, self.app.tasks[TASK_SUCCEEDED], header,
                                       name, result.result)
        else:
            failure = plain_tasks.exception_details(name, result.result, result.traceback)
            plain_tasks.record_failure(self.durable, self.app.tasks[TASK_FAILED], header, name,
                                       failure)

    def _celery_task(self, name: str) -> Any:
        for app in (self.user_app, self.app):
            if app is not None and name in app.tasks:
                return app.tasks[name]
        raise UnknownNameError(
            f"ctx.call_task({name!r}): no Celery task of that name is registered in the test "
            "environment; define it with @shared_task, or on the app given as "
            "DurableTestEnv(app=...), and import its module before the test runs (a task of "
            "another service can be replaced by a stand-in registered under its name)")

    # -- activities ----------------------------------------------------------------------------
    def mock_activity(self, activity: Any, *, returns: Any = UNSET,
                      raises: BaseException | type[BaseException] | None = None,
                      side_effect: Callable[[ActivityContext, Any], Any] | None = None,
                      times: int | None = None) -> ActivityMock:
        """Replace an activity (a decorated function or its name) for this environment.

        The mock ``returns`` a value, ``raises`` an exception (an instance or a class), or calls
        ``side_effect(ctx, input)``; with ``times=N`` it answers the first N calls only and the
        real activity runs after that (``raises=..., times=2``: fail twice, then succeed).
        An activity the process has not registered can be mocked too.
        """
        mock = ActivityMock.make(name_of(activity, "activity"), returns, raises, side_effect,
                                 times)
        registry = self.durable.registry
        if mock.name not in self._real:
            self._real[mock.name] = registry.activities.get(mock.name)
        install(self.durable, mock, self._real[mock.name])
        return mock

    # -- the client API, delivering what each call causes ---------------------------------------
    def schedule_new_orchestration(self, orchestrator: Any, *, input: Any = None,
                                   instance_id: str | None = None,
                                   start_at: datetime | None = None, version: str | None = None,
                                   tags: dict[str, str] | None = None,
                                   session: Any = None) -> str:
        """Create an instance and run it until it waits (for a timer, an event, ...); in a
        transaction (``session=``, Django's ``atomic()``), it starts at the commit."""
        instance_id = super().schedule_new_orchestration(
            orchestrator, input=input, instance_id=instance_id, start_at=start_at,
            version=version, tags=tags, session=session)
        self._scheduled_ids.append(instance_id)
        self.run_until_idle()
        return instance_id

    def trigger_schedule(self, schedule_id: str) -> str:
        instance_id = super().trigger_schedule(schedule_id)
        self.run_until_idle()
        return instance_id

    def raise_orchestration_event(self, instance_id: str, event_name: str, *,
                                  data: Any = None) -> None:
        super().raise_orchestration_event(instance_id, event_name, data=data)
        self.run_until_idle()

    def signal_entity(self, entity_id: Any, operation_name: str, *, input: Any = None,
                      signal_time: datetime | None = None) -> None:
        super().signal_entity(entity_id, operation_name, input=input, signal_time=signal_time)
        self.run_until_idle()

    def suspend_orchestration(self, instance_id: str, *, reason: str | None = None,
                              cancel_running: bool = False) -> None:
        super().suspend_orchestration(instance_id, reason=reason, cancel_running=cancel_running)
        self.run_until_idle()

    def resume_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        super().resume_orchestration(instance_id, reason=reason)
        self.run_until_idle()

    def terminate_orchestration(self, instance_id: str, *, output: Any = None,
                                recursive: bool = True, cancel_running: bool = False) -> None:
        super().terminate_orchestration(instance_id, output=output, recursive=recursive,
                                        cancel_running=cancel_running)
        self.run_until_idle()

    def restart_orchestration(self, instance_id: str, *,
                              restart_with_new_instance_id: bool = False) -> str:
        new_id = super().restart_orchestration(
            instance_id, restart_with_new_instance_id=restart_with_new_instance_id)
        self.run_until_idle()
        return new_id

    def rewind_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        super().rewind_orchestration(instance_id, reason=reason)
        self.run_until_idle()

    def wait_for_orchestration_start(self, instance_id: str, *,
                                     timeout: float = 60) -> OrchestrationState:
        """Run (skipping time) until the instance has left PENDING."""
        return self._run_until(instance_id, timeout,
                               lambda s: s is not OrchestrationStatus.PENDING, "start")

    def wait_for_orchestration_completion(self, instance_id: str, *,
                                          timeout: float = 60) -> OrchestrationState:
        """Run until the instance ends, moving the clock to the next timer whenever nothing
        else can progress: a month-long timer fires at once. ``timeout`` bounds the real
        seconds this takes; `TimeoutError` when the instance waits for something only the test
        can give (an external event, a resume)."""
        return self._run_until(instance_id, timeout, lambda s: s.is_terminal, "complete")

    def _run_until(self, instance_id: str, timeout: float,
                   done: Callable[[OrchestrationStatus], bool], what: str) -> OrchestrationState:
        deadline = time.monotonic() + timeout
        while True:
            self.run_until_idle()
            record = self._require(instance_id)
            if done(record.status):
                return to_state(record)
            due = self._next_due()
            if due is None:
                raise TimeoutError(_stuck_message(instance_id, record.status, what))
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"orchestration {instance_id!r} did not {what} within {timeout}s of real "
                    f"time (status {record.status.value}, test clock at {self.now.isoformat()}): "
                    "does it loop forever (continue_as_new, timers)?")
            self._move_clock(due)

def _stuck_message(instance_id: str, status: OrchestrationStatus, what: str) -> str:
    if status is OrchestrationStatus.SUSPENDED:
        hint = "it is suspended: resume it (resume_orchestration)"
    else:
        hint = ("nothing is due in the test environment: it waits for an external event "
                "(raise it with raise_orchestration_event)")
    return f"orchestration {instance_id!r} cannot {what}: it is {status.value} and {hint}"


def _user_durable(app: Celery | Durable | None) -> Durable | None:
    if app is None or isinstance(app, Durable):
        return app
    if not isinstance(app, Celery):
        raise TypeError(f"app must be a Celery app with a Durable, or a Durable; got {app!r}")
    app.loader.import_default_modules()  # its include= / imports modules register definitions
    found = durable_of(app)
    if found is None:
        raise DurableError(f"the Celery app {app.main!r} has no Durable: create one with "
                           "Durable(app) in its module, or pass the Durable itself")
    return found
