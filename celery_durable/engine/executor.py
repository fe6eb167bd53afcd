"""The executor: replays an orchestration's history and runs it forward on new events.

``Orchestration`` holds one instance's live state (the orchestrator's generator and its context).
``replay(history)`` feeds recorded events; ``run(new_events, now)`` feeds new ones and returns an
``EpisodeResult``: the events to append, the actions to carry out and the resulting status. The
object can be kept between episodes (a warm cache) and fed only the next episode's new events.

History is written so that every input event is followed by the scheduling events of the actions
it caused. Replay checks that order strictly, which is how a code change that schedules something
else, more or less than history records is detected (``NonDeterminismError``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from celery_durable.engine import history as h
from celery_durable.engine.actions import (
    ENTITY_ACTIONS,
    Action,
    CallEntity,
    CreateTimer,
    LockEntities,
    ScheduleActivity,
    ScheduleSubOrchestration,
    ScheduleTask,
    SendEvent,
    SignalEntity,
    TerminateOrchestration,
    UnlockEntities,
)
from celery_durable.engine.context import OrchestrationContext, RetryableTask
from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.history import HistoryEvent, utc
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.engine.tasks import Task, success_completes
from celery_durable.errors import NonDeterminismError, PayloadError, TaskFailedError
from celery_durable.payload import from_json, input_annotation, to_json

Status = OrchestrationStatus
_TERMINAL_KINDS = (h.CONTINUED_AS_NEW, h.EXECUTION_COMPLETED)
_BUFFERED_WHILE_SUSPENDED = h.COMPLETION_KINDS | {h.EVENT_RAISED, h.EXECUTION_STARTED}


@dataclass
class ContinueAsNew:
    """The instance asked to restart: the runtime starts a new execution with these."""

    input: Any
    version: str | None
    carryover: list[HistoryEvent] = field(default_factory=list)


@dataclass
class EpisodeResult:
    """What one episode produced."""

    new_events: list[HistoryEvent] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    status: OrchestrationStatus = Status.PENDING
    output: Any = None
    failure: FailureDetails | None = None
    custom_status: Any = None
    continue_as_new: ContinueAsNew | None = None
    #: new events that were not appended, with the reason (duplicates, unknown task ids, ...)
    discarded: list[tuple[HistoryEvent, str]] = field(default_factory=list)

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal or self.status is Status.CONTINUED_AS_NEW


_ENTITY_KINDS: dict[type, str] = {CallEntity: h.ENTITY_OPERATION_CALLED,
                                  SignalEntity: h.ENTITY_OPERATION_SIGNALED,
                                  LockEntities: h.ENTITY_LOCK_REQUESTED,
                                  UnlockEntities: h.ENTITY_UNLOCK_SENT}


def describe_action(action: Action) -> str:
    if isinstance(action, (CallEntity, SignalEntity)):
        return f"operation {action.operation!r} of entity {action.entity_id} (task {action.task_id})"
    if isinstance(action, (LockEntities, UnlockEntities)):
        what = "lock" if isinstance(action, LockEntities) else "unlock"
        return f"{what} of {', '.join(action.entity_ids)} (task {action.task_id})"
    if isinstance(action, ScheduleActivity):
        local = "local " if action.local else ""
        return f"{local}activity {action.name!r} (task {action.task_id})"
    if isinstance(action, ScheduleTask):
        return f"Celery task {action.name!r} (task {action.task_id})"
    if isinstance(action, ScheduleSubOrchestration):
        return f"sub-orchestration {action.name!r} (task {action.task_id})"
    if isinstance(action, CreateTimer):
        return f"a timer (task {action.task_id})"
    if isinstance(action, SendEvent):
        return f"event {action.name!r} sent to {action.instance_id!r} (task {action.task_id})"
    return f"terminate {action.instance_id!r}"


def _scheduling_kind(action: Action) -> str:
    if isinstance(action, ENTITY_ACTIONS):
        return _ENTITY_KINDS[type(action)]
    if isinstance(action, (ScheduleActivity, ScheduleTask)):
        return h.TASK_SCHEDULED
    if isinstance(action, ScheduleSubOrchestration):
        return h.SUB_ORCHESTRATION_CREATED
    if isinstance(action, SendEvent):
        return h.EVENT_SENT
    return h.TIMER_CREATED


def _is_task_call(event: HistoryEvent) -> bool:
    """Whether a ``TaskScheduled`` event records a ``ctx.call_task`` (not an activity)."""
    return isinstance(event.data, dict) and bool(event.data.get("celery_task"))


class Orchestration:
    """One instance's orchestrator state, advanced event by event."""

    def __init__(self, orchestrator: Callable[..., Any], instance_id: str, *,
                 default_version: str | None = None,
                 version_of: Callable[[str], str | None] | None = None,
                 max_payload_bytes: int | None = None) -> None:
        self.ctx = OrchestrationContext(instance_id, default_version=default_version,
                                        version_of=version_of,
                                        max_payload_bytes=max_payload_bytes)
        self._fn = orchestrator
        self._generator: Generator[Any, Any, Any] | None = None
        self._waiting_on: Task[Any] | None = None
        self._status = Status.PENDING
        self._output: Any = None
        self._failure: FailureDetails | None = None
        self._started = False           # ExecutionStarted accepted (perhaps buffered)
        self._running = False           # the orchestrator function has been called
        self._code_done = False         # the code returned, raised or continued as new
        self._recorded_done = False     # ExecutionCompleted is in history
        self._recorded_continued = False  # ContinuedAsNew is in history
        self._suspended_events: list[HistoryEvent] = []
        self._received_ids: set[int] = set()
        self._next_seq = 0
        self._carryover: list[HistoryEvent] = []
        #: this execution's ExecutionStarted (its data carries what the start kept, e.g. the
        #: trace context), once fed
        self.started: HistoryEvent | None = None

    @property
    def history_length(self) -> int:
        """How many history events this state has consumed (the next event's seq)."""
        return self._next_seq

    @property
    def status(self) -> OrchestrationStatus:
        return self._status

    def retries_local_activity(self, timer_task_id: int) -> bool:
        """Whether timer ``timer_task_id`` is the wait before another attempt of a local
        activity (the runtime may wait it out in-process and feed its ``TimerFired``)."""
        retryable = self.ctx._retry_timers.get(timer_task_id)
        if retryable is None:
            return False
        action = retryable.make_action(-1, retryable.attempt + 1)
        return isinstance(action, ScheduleActivity) and action.local

    def would_resume(self, event: HistoryEvent) -> bool:
        """Whether feeding ``event`` now could let the code go on or schedule anything. False
        only when certain it would not: a task's success that leaves what the code waits on
        incomplete (one more result of a fan-out whose when_all waits for others, or of a task
        nobody waits on yet). Anything else (a failure, which may schedule a retry; an event
        this state does not expect) counts as resuming."""
        if event.kind not in (h.TASK_COMPLETED, h.SUB_ORCHESTRATION_COMPLETED) or \
                self._status is not Status.RUNNING or self._generator is None or \
                self._code_done or event.task_id in self._received_ids:
            return True
        task = self.ctx._open_tasks.get(event.task_id) if event.task_id is not None else None
        waiting = self._waiting_on
        if task is None or waiting is None or waiting.is_complete:
            return True
        return success_completes(task, waiting)

    # -- feeding events ---------------------------------------------------------------------------
    def replay(self, history: Sequence[HistoryEvent]) -> None:
        """Feed recorded history; a mismatch with the code fails the instance (NonDeterminismError)."""
        self.ctx._is_replaying = True
        replayed = 0
        try:
            for event in history:
                self._replay_one(event)
                replayed += 1
        except NonDeterminismError as exc:
            for rest in history[replayed + 1:]:  # the rest of history stays: new events go after it
                self._next_seq = rest.seq + 1 if rest.seq >= 0 else self._next_seq + 1
                self.ctx._now = max(self.ctx._now, rest.timestamp)
            section = self.ctx._section
            if section is not None and not section.recorded:
                self.ctx._section = None  # its lock was never requested: nothing to release
            self.ctx._pending_actions.clear()
            self._recorded_done = False
            self._finish(Status.FAILED, failure=FailureDetails(str(exc), type(exc).__name__))
        finally:
            self.ctx._is_replaying = False

    def _replay_one(self, event: HistoryEvent) -> None:
        self._next_seq = event.seq + 1 if event.seq >= 0 else self._next_seq + 1
        self.ctx._now = max(self.ctx._now, event.timestamp)
        pending = self.ctx._pending_actions
        if event.kind in h.SCHEDULING_KINDS:
            action = pending.pop(event.task_id, None) if event.task_id is not None else None
            if action is None:
                raise NonDeterminismError(
                    f"history has {event.describe()} but the code did not schedule it "
                    f"({self._what_code_does()})")
            if _scheduling_kind(action) != event.kind or \
                    getattr(action, "name", event.name) != event.name or \
                    isinstance(action, ScheduleTask) != _is_task_call(event) or \
                    (isinstance(action, (CallEntity, SignalEntity))
                     and action.entity_id != event.name):
                raise NonDeterminismError(
                    f"history has {event.describe()} but the code scheduled "
                    f"{describe_action(action)}")
            self._recorded(action)
            return
        if pending:
            action = next(iter(pending.values()))
            raise NonDeterminismError(
                f"the code scheduled {describe_action(action)} but history has "
                f"{event.describe()} at that point")
        if event.kind in _TERMINAL_KINDS:
            if not self._code_done:
                raise NonDeterminismError(
                    f"history has {event.describe()} but the code has not finished "
                    f"({self._what_code_does()})")
            if event.kind == h.EXECUTION_COMPLETED:
                self._recorded_done = True
            else:
                self._recorded_continued = True
            return
        if self._code_done:
            raise NonDeterminismError(
                f"the code finished with status {self._status.value} but history continues "
                f"with {event.describe()}")
        reason = self._discard_reason(event)
        if reason is not None:
            raise NonDeterminismError(f"history has {event.describe()}, which cannot be "
                                      f"applied: {reason}")
        self._apply(event)

    def run(self, new_events: Sequence[HistoryEvent], now: datetime) -> EpisodeResult:
        """Feed new events (from the inbox) at ``now`` and return what the episode produced."""
        now = max(utc(now), self.ctx._now)
        self.ctx._now = now
        self.ctx._is_replaying = False
        result = EpisodeResult()
        self._flush(result, now)  # outputs a replayed prefix had not recorded yet
        for event in new_events:
            reason = self._discard_reason(event)
            if reason is not None:
                if self._status is Status.CONTINUED_AS_NEW and event.kind == h.EVENT_RAISED \
                        and self._carry_events:
                    self._carryover.append(event)
                else:
                    result.discarded.append((event, reason))
                continue
            event = event.with_seq(self._next_seq, now)
            self._next_seq += 1
            result.new_events.append(event)
            self._apply(event, result)
            self._flush(result, now)
        result.status = self._status
        result.output = self._output
        result.failure = self._failure
        result.custom_status = self.ctx._custom_status
        if self._status is Status.CONTINUED_AS_NEW and self.ctx._continue_as_new is not None:
            new_input, _, new_version = self.ctx._continue_as_new
            result.continue_as_new = ContinueAsNew(
                new_input, new_version if new_version is not None else self.ctx._version,
                list(self._carryover))
        return result

    @property
    def _carry_events(self) -> bool:
        return self.ctx._continue_as_new is not None and self.ctx._continue_as_new[1]

    # -- deciding and applying -------------------------------------------------------------------
    def _discard_reason(self, event: HistoryEvent) -> str | None:
        kind = event.kind
        if kind in h.SCHEDULING_KINDS or kind in _TERMINAL_KINDS:
            return f"{kind} is written by the orchestrator, it cannot arrive as a new event"
        if self._code_done or self._recorded_done:
            return f"the instance has already ended ({self._status.value})"
        if kind == h.EXECUTION_STARTED:
            return "the instance has already started" if self._started else None
        if kind == h.EXECUTION_REWOUND:
            return None  # a record of a rewind (engine/rewind.py): nothing to apply
        if kind == h.EXECUTION_SUSPENDED and self._status is Status.SUSPENDED:
            return "the instance is already suspended"
        if kind == h.EXECUTION_RESUMED and self._status is not Status.SUSPENDED:
            return "the instance is not suspended"
        if kind in h.COMPLETION_KINDS:
            task_id = event.task_id
            if task_id in self._received_ids:
                return f"duplicate: task {task_id} has already completed"
            expected = self.ctx._completion_kinds.get(task_id) if task_id is not None else None
            if expected is None:
                return (f"unknown task id {task_id}: this execution never scheduled it "
                        f"(a stale message from an earlier execution?)")
            if kind not in expected:
                return (f"task {task_id} cannot be completed by {kind}; it expects "
                        f"{' or '.join(sorted(expected))}")
        return None

    def _apply(self, event: HistoryEvent, result: EpisodeResult | None = None) -> None:
        kind = event.kind
        if kind in h.COMPLETION_KINDS:
            assert event.task_id is not None
            self._received_ids.add(event.task_id)
        elif kind == h.EXECUTION_STARTED:
            self._started = True
            self.started = self.started or event
        if kind in _BUFFERED_WHILE_SUSPENDED and self._status is Status.SUSPENDED:
            self._suspended_events.append(event)
        elif kind in h.COMPLETION_KINDS:
            self._complete_task(event)
        elif kind == h.EVENT_RAISED:
            self._deliver_event(event)
        elif kind == h.EXECUTION_STARTED:
            self._start(event)
        elif kind == h.EXECUTION_SUSPENDED:
            self._status = Status.SUSPENDED
        elif kind == h.EXECUTION_RESUMED:
            self._status = Status.RUNNING if self._running else Status.PENDING
            # one at a time: what is left when the code ends stays visible to _finish (carryover)
            while self._suspended_events and not self._code_done:
                self._apply(self._suspended_events.pop(0), result)
        elif kind == h.EXECUTION_TERMINATED:
            data = event.data or {}
            if data.get("recursive", True) and result is not None:
                result.actions.extend(TerminateOrchestration(child, data.get("output"), True)
                                      for task_id, child in self.ctx._children.items()
                                      if task_id not in self._received_ids)  # not buffered ends
            self._finish(Status.TERMINATED, output=data.get("output"))

    def _start(self, event: HistoryEvent) -> None:
        data = event.data or {}
        ctx = self.ctx
        ctx._name = event.name
        ctx._version = data.get("version")
        ctx._parent_instance_id = data.get("parent_instance_id")
        ctx._generation = int(data.get("generation") or 0)
        self._status = Status.RUNNING
        self._running = True
        try:
            value = from_json(data.get("input"), input_annotation(self._fn))
            takes_input = len(inspect.signature(self._fn).parameters) >= 2
            produced = self._fn(ctx, value) if takes_input else self._fn(ctx)
        except Exception as exc:  # noqa: BLE001 - user code: any exception fails the instance
            self._finish_with_exception(exc)
            return
        if inspect.isgenerator(produced):
            self._generator = produced
            self._step(None, None)
        else:
            self._complete(produced)

    def _complete_task(self, event: HistoryEvent) -> None:
        ctx = self.ctx
        task_id = event.task_id
        assert task_id is not None
        ctx._completion_kinds.pop(task_id, None)
        retry_of = ctx._retry_timers.pop(task_id, None)
        if retry_of is not None:
            ctx._schedule_next_attempt(retry_of)
            return
        task = ctx._open_tasks.pop(task_id)
        ctx._children.pop(task_id, None)
        ctx._entity_completed(task_id)
        if event.kind in (h.TASK_COMPLETED, h.SUB_ORCHESTRATION_COMPLETED,
                          h.ENTITY_OPERATION_COMPLETED):
            task._succeed(from_json(event.data))
        elif event.kind == h.TIMER_FIRED:
            task._succeed(None)
        elif event.kind == h.ENTITY_LOCK_GRANTED:
            task._succeed(ctx._lock_granted(task_id))
        else:
            details = FailureDetails.from_json(event.data or {})
            if isinstance(task, RetryableTask):
                fire_at = task.policy.next_fire_at(task.attempt, ctx._now, task.first_attempt_at)
                if fire_at is not None:
                    ctx._schedule_retry_timer(task, fire_at)
                    return
            message = f"{task.description} failed: {details}"
            task._fail(TaskFailedError(message, details))
        self._resume()

    def _deliver_event(self, event: HistoryEvent) -> None:
        name = event.name or ""
        waiters = self.ctx._event_waiters.get(name.lower())
        if waiters:
            waiters.popleft()._succeed(from_json(event.data))
            self._resume()
        else:
            self.ctx._event_buffer.append((name, event.data))

    # -- driving the orchestrator's generator ------------------------------------------------------
    def _resume(self) -> None:
        task = self._waiting_on
        if self._generator is None or self._code_done or task is None or not task.is_complete:
            return
        exc = task.get_exception()
        self._step(None if exc else task._result, exc)

    def _step(self, value: Any, exc: BaseException | None) -> None:
        assert self._generator is not None
        while True:
            try:
                yielded = self._generator.throw(exc) if exc else self._generator.send(value)
            except StopIteration as stop:
                self._complete(stop.value)
                return
            except Exception as error:  # noqa: BLE001 - user code: any exception fails it
                self._finish_with_exception(error)
                return
            if self.ctx._continue_as_new is not None:
                self._finish(Status.CONTINUED_AS_NEW)
                return
            if not isinstance(yielded, Task):
                self._finish_with_exception(TypeError(
                    f"the orchestrator yielded {yielded!r}; yield tasks made by ctx.call_activity, "
                    "ctx.call_task, ctx.create_timer, ctx.wait_for_external_event, "
                    "ctx.call_sub_orchestrator, when_all or when_any"))
                return
            self._waiting_on = yielded
            if not yielded.is_complete:
                return
            exc = yielded.get_exception()
            value = None if exc else yielded._result

    def _complete(self, value: Any) -> None:
        if self.ctx._continue_as_new is not None:
            self._finish(Status.CONTINUED_AS_NEW)
            return
        try:
            output = to_json(value, f"output of orchestrator {self.ctx._name!r}",
                             limit=self.ctx._max_payload_bytes)
        except PayloadError as exc:
            self._finish_with_exception(exc)
            return
        self._finish(Status.COMPLETED, output=output)

    def _finish_with_exception(self, exc: BaseException) -> None:
        self._finish(Status.FAILED, failure=FailureDetails.from_exception(exc))

    def _finish(self, status: OrchestrationStatus, *, output: Any = None,
                failure: FailureDetails | None = None) -> None:
        self._status, self._output, self._failure = status, output, failure
        self._code_done = True
        # a critical section still open when the code ends: its locks are released (the
        # unlock its with block's exit may schedule while the generator closes is dropped
        # with the rest, and scheduled here once)
        section = self.ctx._section
        if section is not None and section.released:
            section = None
        if self._generator is not None:
            # closing runs the code's finally blocks: whatever they raise, yield or schedule
            # comes after the end and is dropped
            scheduled = set(self.ctx._pending_actions)
            with contextlib.suppress(Exception):  # e.g. RuntimeError for a yield in finally
                self._generator.close()
            for task_id in set(self.ctx._pending_actions) - scheduled:
                del self.ctx._pending_actions[task_id]
        if section is not None:
            section.released = True
            self.ctx._end_critical_section(section)
        if status is Status.CONTINUED_AS_NEW and self._carry_events:
            self._carryover = [
                h.event_raised(name, data, self.ctx._now) for name, data in self.ctx._event_buffer
            ] + [e for e in self._suspended_events if e.kind == h.EVENT_RAISED]

    def _recorded(self, action: Action) -> None:
        """Note that history holds ``action`` (a lock request's section then has locks to
        release, whatever happens next)."""
        section = self.ctx._section
        if isinstance(action, LockEntities) and section is not None and \
                section.lock_task_id == action.task_id:
            section.recorded = True

    def _what_code_does(self) -> str:
        if self._code_done:
            return f"it finished with status {self._status.value}"
        if isinstance(self._waiting_on, Task) and not self._waiting_on.is_complete:
            return f"it is waiting on {self._waiting_on!r}"
        return "it scheduled nothing there"

    # -- writing outputs -------------------------------------------------------------------------
    def _flush(self, result: EpisodeResult, now: datetime) -> None:
        """Record the pending actions (and the end of the execution) after the last event."""
        ctx = self.ctx
        for task_id, action in list(ctx._pending_actions.items()):
            del ctx._pending_actions[task_id]
            self._recorded(action)
            result.new_events.append(self._scheduling_event(action, now))
            result.actions.append(action)
        if self._code_done and not self._recorded_done:
            if self._status is Status.CONTINUED_AS_NEW and ctx._continue_as_new is not None \
                    and not self._recorded_continued:
                new_input, _, new_version = ctx._continue_as_new
                result.new_events.append(self._event(
                    h.CONTINUED_AS_NEW, now, data={"input": new_input, "version": new_version}))
            result.new_events.append(self._event(h.EXECUTION_COMPLETED, now, data={
                "status": self._status.value, "output": self._output,
                "failure": self._failure.to_json() if self._failure else None}))
            self._recorded_done = True

    def _event(self, kind: str, now: datetime, *, task_id: int | None = None,
               name: str | None = None, data: Any = None) -> HistoryEvent:
        event = HistoryEvent(self._next_seq, kind, now, task_id, name, data)
        self._next_seq += 1
        return event

    def _scheduling_event(self, action: Action, now: datetime) -> HistoryEvent:
        if isinstance(action, ScheduleActivity):
            data = {"input": action.input, "attempt": action.attempt}
            if action.local:
                data["local"] = True
            return self._event(h.TASK_SCHEDULED, now, task_id=action.task_id, name=action.name,
                               data=data)
        if isinstance(action, ScheduleTask):
            return self._event(h.TASK_SCHEDULED, now, task_id=action.task_id, name=action.name,
                               data={"celery_task": True, "args": action.args,
                                     "kwargs": action.kwargs, "options": action.options,
                                     "attempt": action.attempt})
        if isinstance(action, (CallEntity, SignalEntity)):
            return self._event(_ENTITY_KINDS[type(action)], now, task_id=action.task_id,
                               name=action.entity_id,
                               data={"operation": action.operation, "input": action.input})
        if isinstance(action, LockEntities):
            return self._event(h.ENTITY_LOCK_REQUESTED, now, task_id=action.task_id,
                               data={"entities": list(action.entity_ids)})
        if isinstance(action, UnlockEntities):
            return self._event(h.ENTITY_UNLOCK_SENT, now, task_id=action.task_id,
                               data={"entities": list(action.entity_ids),
                                     "lock_task_id": action.lock_task_id})
        if isinstance(action, SendEvent):
            return self._event(h.EVENT_SENT, now, task_id=action.task_id, name=action.name,
                               data={"instance_id": action.instance_id, "data": action.data})
        if isinstance(action, ScheduleSubOrchestration):
            return self._event(h.SUB_ORCHESTRATION_CREATED, now, task_id=action.task_id,
                               name=action.name,
                               data={"instance_id": action.instance_id, "input": action.input,
                                     "version": action.version})
        assert isinstance(action, CreateTimer)
        name = "retry" if action.task_id in self.ctx._retry_timers else None
        return self._event(h.TIMER_CREATED, now, task_id=action.task_id, name=name,
                           data={"fire_at": action.fire_at.isoformat()})


def execute(orchestrator: Callable[..., Any], instance_id: str,
            history: Sequence[HistoryEvent], new_events: Sequence[HistoryEvent],
            now: datetime | None = None, *, default_version: str | None = None) -> EpisodeResult:
    """Replay ``history``, then run ``new_events`` at ``now``; the engine's one-call form."""
    orchestration = Orchestration(orchestrator, instance_id, default_version=default_version)
    orchestration.replay(history)
    if now is None:
        stamps = [e.timestamp for e in (*history, *new_events)]
        now = max(stamps) if stamps else datetime.min.replace(tzinfo=timezone.utc)
    return orchestration.run(new_events, now)
