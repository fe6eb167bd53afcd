"""OrchestrationContext: what an orchestrator function sees and schedules through.

Everything here is deterministic: task ids are a counter, time is read from history, and
``new_uuid`` derives from the instance id and that counter, so replaying the same history gives
the same answers.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from celery_durable.engine import history as h
from celery_durable.engine.actions import (
    CallEntity,
    CreateTimer,
    LockEntities,
    ScheduleActivity,
    ScheduleSubOrchestration,
    ScheduleTask,
    Scheduling,
    SendEvent,
    SignalEntity,
)
from celery_durable.engine.entity_calls import (
    CriticalSection,
    canonical_ids,
    check_call,
    check_no_section,
)
from celery_durable.engine.entity_id import entity_id_of
from celery_durable.engine.history import utc
from celery_durable.engine.retry import RetryPolicy
from celery_durable.engine.task_calls import task_arguments, task_name_of, task_options
from celery_durable.engine.tasks import CompletableTask, Task, WhenAllTask, WhenAnyTask
from celery_durable.ids import check_instance_id
from celery_durable.payload import from_json, to_json
from celery_durable.versioning import Version, compare_versions

#: which history events may complete the task an action scheduled
COMPLETIONS_OF: dict[type, frozenset[str]] = {
    ScheduleActivity: frozenset({h.TASK_COMPLETED, h.TASK_FAILED}),
    ScheduleTask: frozenset({h.TASK_COMPLETED, h.TASK_FAILED}),
    CreateTimer: frozenset({h.TIMER_FIRED}),
    ScheduleSubOrchestration: frozenset({h.SUB_ORCHESTRATION_COMPLETED,
                                         h.SUB_ORCHESTRATION_FAILED}),
    CallEntity: frozenset({h.ENTITY_OPERATION_COMPLETED, h.ENTITY_OPERATION_FAILED}),
    LockEntities: frozenset({h.ENTITY_LOCK_GRANTED}),
}
_UUID_NAMESPACE = uuid.UUID("9b2f5c1e-3c4d-4e8a-9a53-5c1b7e0d2a61")
_logger = logging.getLogger("celery_durable.orchestrator")


def name_of(target: Any, what: str) -> str:
    """The registered name of an activity/orchestrator given as a decorated function or a name."""
    if isinstance(target, str):
        if not target:
            raise ValueError(f"{what} name must not be empty")
        return target
    name = getattr(target, "__durable_name__", None) or getattr(target, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a function decorated with @{what} or its name, "
                        f"got {target!r}")
    return name


class RetryableTask(CompletableTask[Any]):
    """An activity or sub-orchestration call that is retried by a RetryPolicy.

    Each attempt gets its own task id; the waits between attempts are durable timers.
    """

    def __init__(self, description: str, policy: RetryPolicy, make_action: Any,
                 first_attempt_at: datetime) -> None:
        super().__init__(description)
        self.policy = policy
        self.make_action = make_action  # (task_id, attempt) -> Scheduling
        self.attempt = 1
        self.first_attempt_at = first_attempt_at


class ReplaySafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """A logger that stays silent while the orchestrator is replaying history."""

    def __init__(self, ctx: OrchestrationContext) -> None:
        super().__init__(_logger, {})
        self._ctx = ctx

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        return not self._ctx.is_replaying and super().isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self._ctx.instance_id}] {msg}", kwargs


class OrchestrationContext:
    """The orchestrator's handle on its instance: schedule work, read deterministic time."""

    def __init__(self, instance_id: str, *, default_version: str | None = None,
                 version_of: Callable[[str], str | None] | None = None,
                 max_payload_bytes: int | None = None) -> None:
        self._instance_id = instance_id
        #: payloads (inputs, custom status, output) over this many bytes of JSON are refused
        self._max_payload_bytes = max_payload_bytes
        self._default_version = default_version
        #: the version a sub-orchestration gets when the call names none (by orchestrator name)
        self._version_of = version_of
        self._name: str | None = None
        self._version: str | None = None
        self._parent_instance_id: str | None = None
        self._generation = 0
        self._now = datetime.min.replace(tzinfo=timezone.utc)
        self._is_replaying = False
        self._sequence = 0
        self._uuid_counter = 0
        self._custom_status: Any = None
        # task id -> action the code created that history has not recorded yet (ordered)
        self._pending_actions: dict[int, Scheduling] = {}
        # task id -> task waiting for its completion event
        self._open_tasks: dict[int, CompletableTask[Any]] = {}
        # retry timer task id -> the retryable task it will re-attempt
        self._retry_timers: dict[int, RetryableTask] = {}
        # open task id -> the event kinds that may complete it
        self._completion_kinds: dict[int, frozenset[str]] = {}
        # running sub-orchestrations: task id -> child instance id
        self._children: dict[int, str] = {}
        # external events: lower-cased name -> waiting tasks / received-but-unclaimed events
        self._event_waiters: dict[str, deque[CompletableTask[Any]]] = {}
        self._event_buffer: deque[tuple[str, Any]] = deque()
        self._continue_as_new: tuple[Any, bool, str | None] | None = None
        # entities: the critical section (requested or held), and pending calls in it
        self._section: CriticalSection | None = None
        self._entity_calls: dict[int, str] = {}
        self.logger = ReplaySafeLogger(self)

    # -- read-only properties -----------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def parent_instance_id(self) -> str | None:
        return self._parent_instance_id

    @property
    def version(self) -> Version | None:
        """The version this execution was scheduled with (None: unversioned). A ``str`` that
        orders as dotted numbers: ``ctx.version > "1.9"`` is true for ``"1.10"``."""
        return None if self._version is None else Version(self._version)

    def version_at_least(self, minimum: str) -> bool:
        """Whether this execution's version is ``minimum`` or newer (False when unversioned):
        ``if ctx.version_at_least("2"): <the new code path>``."""
        return compare_versions(self._version, minimum) >= 0

    @property
    def current_utc_datetime(self) -> datetime:
        """Deterministic current time: the timestamp of the history event being processed."""
        return self._now

    @property
    def is_replaying(self) -> bool:
        return self._is_replaying

    @property
    def custom_status(self) -> Any:
        return self._custom_status

    # -- scheduling -----------------------------------------------------------------------------
    def _next_id(self) -> int:
        task_id = self._sequence
        self._sequence += 1
        return task_id

    def _schedule(self, action: Scheduling, task: CompletableTask[Any]) -> None:
        task_id = action.task_id
        self._pending_actions[task_id] = action
        self._open_tasks[task_id] = task
        self._completion_kinds[task_id] = COMPLETIONS_OF[type(action)]
        if isinstance(action, ScheduleSubOrchestration):
            self._children[task_id] = action.instance_id

    def call_activity(self, activity: Any, *, input: Any = None,
                      retry_policy: RetryPolicy | None = None) -> Task[Any]:
        """Schedule an activity; the task completes with its result (or TaskFailedError)."""
        name = name_of(activity, "activity")
        payload = to_json(input, f"input of activity {name!r}", limit=self._max_payload_bytes)

        def make(task_id: int, attempt: int) -> Scheduling:
            return ScheduleActivity(task_id, name, payload, attempt)

        return self._call(make, f"activity {name!r}", retry_policy)

    def call_local_activity(self, activity: Any, *, input: Any = None,
                            retry_policy: RetryPolicy | None = None) -> Task[Any]:
        """Run an activity in the episode's process, with no broker hop: the episode runs it
        before it commits and records its result in the same commit (at least once, like
        every activity). The task completes with its result (or TaskFailedError)."""
        name = name_of(activity, "activity")
        payload = to_json(input, f"input of local activity {name!r}",
                          limit=self._max_payload_bytes)

        def make(task_id: int, attempt: int) -> Scheduling:
            return ScheduleActivity(task_id, name, payload, attempt, local=True)

        return self._call(make, f"local activity {name!r}", retry_policy)

    def call_task(self, task: Any, *, args: Any = (), kwargs: dict[str, Any] | None = None,
                  retry_policy: RetryPolicy | None = None, **celery_options: Any) -> Task[Any]:
        """Send an existing Celery task (a task object or its name) with its own ``args`` and
        ``kwargs``; the task completes with its return value, or fails with TaskFailedError once
        Celery's own retries are over. ``celery_options`` (queue, priority, countdown, expires,
        time_limit, ...) go to ``send_task``; without ``queue`` the app's ``task_routes``
        decide."""
        name = task_name_of(task)
        call_args, call_kwargs = task_arguments(name, args, kwargs, self._max_payload_bytes)
        options = task_options(name, celery_options)

        def make(task_id: int, attempt: int) -> Scheduling:
            return ScheduleTask(task_id, name, call_args, call_kwargs, options, attempt)

        return self._call(make, f"Celery task {name!r}", retry_policy)

    def call_sub_orchestrator(self, orchestrator: Any, *, input: Any = None,
                              instance_id: str | None = None,
                              retry_policy: RetryPolicy | None = None,
                              version: str | None = None) -> Task[Any]:
        """Start a child orchestration; the task completes with its output."""
        check_no_section(self._section, "start a sub-orchestration")
        name = name_of(orchestrator, "orchestrator")
        payload = to_json(input, f"input of sub-orchestration {name!r}", limit=self._max_payload_bytes)
        if version is not None:
            child_version: str | None = version
        elif self._version_of is not None:
            child_version = self._version_of(name)
        else:
            child_version = self._default_version

        if instance_id is not None:
            check_instance_id(instance_id)

        def make(task_id: int, attempt: int) -> Scheduling:
            child_id = instance_id or self._child_instance_id(task_id)
            return ScheduleSubOrchestration(task_id, name, child_id, payload, child_version)

        return self._call(make, f"sub-orchestration {name!r}", retry_policy)

    def _call(self, make: Any, description: str, retry_policy: RetryPolicy | None) -> Task[Any]:
        task_id = self._next_id()
        task: CompletableTask[Any]
        if retry_policy is None:
            task = CompletableTask(description)
        else:
            if not isinstance(retry_policy, RetryPolicy):
                raise TypeError(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
            task = RetryableTask(description, retry_policy, make, self._now)
        self._schedule(make(task_id, 1), task)
        return task

    def _child_instance_id(self, task_id: int) -> str:
        if self._generation:
            return f"{self._instance_id}:{self._generation}:{task_id}"
        return f"{self._instance_id}:{task_id}"

    def create_timer(self, fire_at: datetime | timedelta) -> Task[None]:
        """A durable timer that fires at ``fire_at`` (an aware datetime, or a delay from now)."""
        if isinstance(fire_at, timedelta):
            when = self._now + fire_at
        elif isinstance(fire_at, datetime):
            when = utc(fire_at)
        else:
            raise TypeError(f"create_timer takes a datetime or a timedelta, got {fire_at!r}")
        task_id = self._next_id()
        task: CompletableTask[None] = CompletableTask(f"timer at {when.isoformat()}")
        self._schedule(CreateTimer(task_id, when), task)
        return task

    def _schedule_retry_timer(self, retryable: RetryableTask, fire_at: datetime) -> None:
        task_id = self._next_id()
        self._pending_actions[task_id] = CreateTimer(task_id, fire_at)
        self._retry_timers[task_id] = retryable
        self._completion_kinds[task_id] = COMPLETIONS_OF[CreateTimer]

    def _schedule_next_attempt(self, retryable: RetryableTask) -> None:
        retryable.attempt += 1
        task_id = self._next_id()
        self._schedule(retryable.make_action(task_id, retryable.attempt), retryable)

    def wait_for_external_event(self, name: str) -> Task[Any]:
        """Wait for an event raised with ``name`` (case-insensitive); earlier ones are queued."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"event name must be a non-empty string, got {name!r}")
        key = name.lower()
        task: CompletableTask[Any] = CompletableTask(f"external event {name!r}")
        for i, (buffered_name, data) in enumerate(self._event_buffer):
            if buffered_name.lower() == key:
                del self._event_buffer[i]
                task._succeed(from_json(data))
                return task
        self._event_waiters.setdefault(key, deque()).append(task)
        return task

    def send_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Raise ``event_name`` with ``data`` on orchestration ``instance_id``. The send is
        recorded in this instance's history (``EventSent``) and the event is written to the
        target's inbox in the same commit: it is delivered once, whatever replays or crashes.
        An instance that does not exist is skipped (logged); one that has ended drops it."""
        check_instance_id(instance_id)
        if not isinstance(event_name, str) or not event_name:
            raise ValueError(f"event name must be a non-empty string, got {event_name!r}")
        payload = to_json(data, f"data of event {event_name!r}", limit=self._max_payload_bytes)
        task_id = self._next_id()
        self._pending_actions[task_id] = SendEvent(task_id, instance_id, event_name, payload)

    def when_all(self, tasks: Sequence[Task[Any]]) -> Task[list[Any]]:
        return WhenAllTask(tasks)

    def when_any(self, tasks: Sequence[Task[Any]]) -> Task[Task[Any]]:
        return WhenAnyTask(tasks)

    # -- entities (see engine/entity_calls.py) ----------------------------------------------------
    def call_entity(self, entity_id: Any, operation: str, input: Any = None) -> Task[Any]:
        """Run ``operation`` on an entity (an `EntityInstanceId` or ``"@name@key"``); the task
        completes with the operation's result, or fails with TaskFailedError if it raised."""
        target = str(entity_id_of(entity_id))
        _check_operation(operation)
        check_call(self._section, target, one_way=False)
        payload = to_json(input, f"input of operation {operation!r} of entity {target}",
                          limit=self._max_payload_bytes)
        task_id = self._next_id()
        task: CompletableTask[Any] = CompletableTask(f"operation {operation!r} of entity {target}")
        self._schedule(CallEntity(task_id, target, operation, payload), task)
        if self._section is not None and not self._section.released:
            self._section.busy.add(target)
            self._entity_calls[task_id] = target
        return task

    def signal_entity(self, entity_id: Any, operation: str, input: Any = None) -> None:
        """Send ``operation`` to an entity without waiting for it (fire and forget)."""
        target = str(entity_id_of(entity_id))
        _check_operation(operation)
        check_call(self._section, target, one_way=True)
        payload = to_json(input, f"input of operation {operation!r} of entity {target}",
                          limit=self._max_payload_bytes)
        task_id = self._next_id()
        self._pending_actions[task_id] = SignalEntity(task_id, target, operation, payload)

    def lock_entities(self, entity_ids: Sequence[Any]) -> Task[CriticalSection]:
        """Lock entities for this orchestration: ``with (yield ctx.lock_entities([a, b])):``.
        Inside the block only this orchestration's operations run on them; the locks are
        released when the block exits, or when the orchestration ends, fails or is
        terminated."""
        check_no_section(self._section, "enter another critical section")
        ids = canonical_ids(entity_ids)
        task_id = self._next_id()
        task: CompletableTask[CriticalSection] = CompletableTask(
            f"lock of {', '.join(ids)}")
        self._schedule(LockEntities(task_id, ids), task)
        self._section = CriticalSection(self, task_id, ids)
        return task

    def _lock_granted(self, task_id: int) -> CriticalSection | None:
        section = self._section
        if section is not None and section.lock_task_id == task_id:
            section.granted = True
        return section

    def _entity_completed(self, task_id: int) -> None:
        target = self._entity_calls.pop(task_id, None)
        if target is not None and self._section is not None:
            self._section.busy.discard(target)

    def _end_critical_section(self, section: CriticalSection) -> None:
        task_id = self._next_id()
        self._pending_actions[task_id] = section.unlock_action(task_id)
        if self._section is section:
            self._section = None

    # -- instance-level ----------------------------------------------------------------------------
    def set_custom_status(self, value: Any) -> None:
        """Publish a JSON value that clients see in the instance's state while it runs."""
        self._custom_status = to_json(value, "custom status", limit=self._max_payload_bytes)

    def new_uuid(self) -> str:
        """A UUID that is the same every time this point of the orchestrator is replayed."""
        self._uuid_counter += 1
        seed = f"{self._instance_id}|{self._generation}|{self._uuid_counter}"
        return str(uuid.uuid5(_UUID_NAMESPACE, seed))

    def continue_as_new(self, new_input: Any, *, save_events: bool = False,
                        new_version: str | None = None) -> None:
        """Restart this instance with ``new_input`` and an empty history once the code yields.

        With ``save_events``, external events received but not yet waited for are carried into
        the new execution.
        """
        payload = to_json(new_input, "continue_as_new input", limit=self._max_payload_bytes)
        self._continue_as_new = (payload, bool(save_events), new_version)


def _check_operation(operation: Any) -> None:
    if not isinstance(operation, str) or not operation:
        raise ValueError(f"an entity operation is a non-empty string, got {operation!r}")
