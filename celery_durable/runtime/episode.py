"""An episode: lock one instance, feed its inbox to the engine, commit, then publish.

The episode runs where its trigger arrives: inline in the worker that just finished an activity
or fired a timer when it can take the instance's lock (no second broker hop), or as the
orchestration task when it is woken. Everything it writes is committed in one transaction; the
broker messages it implies are written to the outbox in that transaction and published after it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_durable import tracing
from celery_durable.engine import history as h
from celery_durable.engine.actions import (
    ENTITY_ACTIONS,
    Action,
    CreateTimer,
    ScheduleActivity,
    ScheduleSubOrchestration,
    ScheduleTask,
    SendEvent,
    SignalEntity,
    TerminateOrchestration,
    UnlockEntities,
)
from celery_durable.engine.executor import EpisodeResult, Orchestration
from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import TaskCallError, UnknownNameError, VersionMismatchError
from celery_durable.runtime import limits, local_activities, messages
from celery_durable.runtime.cache import StateCache
from celery_durable.runtime.cancelled import resend_after_resume
from celery_durable.runtime.entities import plan_entity_action
from celery_durable.runtime.sent_events import send_event
from celery_durable.runtime.timer_queue import timer_queue
from celery_durable.store import (
    Episode,
    EpisodeCommit,
    InboxItem,
    InboxRow,
    NewInstance,
    TimerRow,
    WakeupClaim,
)
from celery_durable.store.records import TASK_KEY, completion_key
from celery_durable.versioning import VersionFailureStrategy, VersioningOptions

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
Status = OrchestrationStatus


@dataclass
class _Plan:
    """What an episode commits (its outbox is published afterwards) and the state to cache."""

    commit: EpisodeCommit
    execution_id: str
    state: Orchestration | None = None
    #: the execution's start (its data keeps the trace context), once the engine has run
    started: h.HistoryEvent | None = None


@dataclass(frozen=True)
class _Rejected:
    """An episode this worker's versioning rejects: nothing is committed, the inbox keeps it."""

    name: str
    version: str | None
    #: rejected because this worker does not know the orchestrator (not for its version)
    unknown_name: bool = False


@dataclass(frozen=True)
class EpisodeOutcome:
    """What an observer of episodes (`EpisodeRunner.observers`: metrics, tracing) is told
    after an episode committed and published."""

    instance_id: str
    orchestrator: str
    #: the instance's status after the episode
    status: OrchestrationStatus
    #: wall time of the episode: lock, load, replay, commit, publish
    seconds: float


def completion_item(execution_id: str, event: h.HistoryEvent) -> InboxItem:
    """The inbox item of a task's completion; its key makes a second delivery a no-op."""
    assert event.task_id is not None, event
    return InboxItem(completion_key(TASK_KEY, execution_id, event.task_id), event, execution_id)


class EpisodeRunner:
    """Runs episodes for one ``Durable`` in this process, with a warm cache of live states."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        self._cache: StateCache | None = None
        #: episodes run, episodes rejected (versioning) and events the engine replayed or fed,
        #: for structural-cost tests
        self.episodes = 0
        self.rejected = 0
        self.events_processed = 0
        #: completions left in the inbox for a coalesced episode (see `can_wait`)
        self.waited = 0
        #: called with an `EpisodeOutcome` after each committed episode (hooks at the edges:
        #: they see what was committed and change nothing; an observer's error is logged)
        self.observers: list[Callable[[EpisodeOutcome], None]] = []

    @property
    def cache(self) -> StateCache:
        """This process' cache of live states (sized by ``durable_state_cache_size``, read when
        the first episode runs: the app may be configured after its Durable is made)."""
        if self._cache is None:
            self._cache = StateCache(self.durable.settings.state_cache_size)
        return self._cache

    def counters(self) -> dict[str, int]:
        """This process' episode and cache counters (for structural-cost tests and benches)."""
        return {"episodes": self.episodes, "rejected": self.rejected,
                "events_processed": self.events_processed, "hits": self.cache.hits,
                "misses": self.cache.misses, "waited": self.waited}

    def can_wait(self, instance_id: str, item: InboxItem) -> bool:
        """Whether ``item`` (a completion) may wait in the inbox for a coalesced episode instead
        of running one now: this process' cached state of the instance is certain that it does
        not let the code go on (one more result of a fan-out whose when_all waits for others).
        A fan-out's results then cost one inbox write each, and few episodes consume them."""
        if self.cache.waits_for_more(instance_id, item.execution_id, item.event):
            self.waited += 1
            return True
        return False

    def run(self, instance_id: str, extra: Sequence[InboxItem] = (), *, wait: bool = False,
            now: datetime | None = None, rejections: int = 0,
            claim: WakeupClaim | None = None) -> bool:
        """Run one episode; False when another worker holds the instance (``extra`` is then in
        its inbox and the caller must leave a wake-up behind: with ``claim``, the transaction
        that wrote ``extra`` claimed it, see `Store.episode`). An episode this worker's
        versioning rejects leaves everything in the inbox and sends the wake-up on to a worker
        that accepts it (``rejections``: how often this wake-up was rejected before)."""
        now = now or datetime.now(timezone.utc)
        store = self.durable.store
        trace = tracing.EpisodeTrace()
        started = time.perf_counter()
        try:
            with store.episode(instance_id, list(extra), wait=wait, claim=claim) as ep:
                if ep is None:
                    return False
                orchestrator = ep.instance.name
                plan = self._plan(ep, now)
                if plan is None:
                    return True
                if not isinstance(plan, _Rejected):
                    trace.begin(ep.instance, plan.execution_id, plan.started, plan.commit,
                                ep.inbox)
                if not isinstance(plan, _Rejected) and plan.state is not None:
                    # cached while the instance is still locked (the last commit releases it),
                    # so that the next episode finds it; should the commit fail, it is dropped
                    # below (and until then `take` refuses it: it is ahead of the store)
                    self.cache.put(instance_id, plan.execution_id, plan.state)
                # leaving without a commit keeps every inbox row and saves ``extra`` to the inbox
                outbox_ids = ([] if isinstance(plan, _Rejected)
                              else ep.commit(plan.commit, last=True))
        except BaseException as exc:
            self.cache.discard(instance_id)
            trace.failed(exc)
            raise
        if isinstance(plan, _Rejected):
            self.rejected += 1
            self.durable.route_rejected(instance_id, plan.name,
                                        None if plan.unknown_name else plan.version, rejections)
            return True
        self.episodes += 1
        self._publish(plan.commit.outbox, outbox_ids)
        trace.end(plan.commit)
        if self.observers:
            self._observe(EpisodeOutcome(instance_id, orchestrator, Status(plan.commit.status),
                                         time.perf_counter() - started))
        return True

    def _observe(self, outcome: EpisodeOutcome) -> None:
        for observer in list(self.observers):
            try:
                observer(outcome)
            except Exception:
                logger.exception("episode observer %r failed", observer)

    def _publish(self, outbox: list[messages.Message], ids: list[int]) -> None:
        messages.publish_committed(self.durable, outbox, ids)

    # -- planning --------------------------------------------------------------------------------
    def _plan(self, ep: Episode, now: datetime) -> _Plan | _Rejected | None:
        inst = ep.instance
        rows = ep.inbox
        if not rows:
            return None
        consumed = [row.id for row in rows if row.id is not None]
        keep = {"status": inst.status, "output": inst.output, "failure": inst.failure,
                "custom_status": inst.custom_status, "completed_at": inst.completed_at}
        if inst.status.is_terminal:
            for row in rows:
                logger.info("instance %s has ended (%s): dropped %s", inst.instance_id,
                            inst.status.value, row.event.describe())
            return _Plan(EpisodeCommit(consumed_inbox_ids=consumed, **keep), inst.execution_id)
        if inst.status is Status.PENDING and inst.start_at is not None and inst.start_at > now \
                and not any(r.event.kind == h.EXECUTION_TERMINATED for r in rows):
            return None
        current: list[InboxRow] = []
        stale: list[InboxRow] = []
        for row in rows:
            (current if row.execution_id in (None, inst.execution_id) else stale).append(row)
        # a new execution's start comes first, before events that were waiting in the inbox
        current.sort(key=lambda row: row.event.kind != h.EXECUTION_STARTED)
        for row in stale:
            logger.info("instance %s: dropped %s addressed to an earlier execution",
                        inst.instance_id, row.event.describe())
        if not current:
            return _Plan(EpisodeCommit(consumed_inbox_ids=consumed, **keep), inst.execution_id)
        version = _execution_version(inst, current)
        versioning = self.durable.versioning
        if not versioning.accepts(version):
            if versioning.failure_strategy is VersionFailureStrategy.REJECT:
                return _Rejected(inst.name, version)
            return self._fail_before_running(inst, consumed, _mismatch(inst, version,
                                                                        versioning), now)
        try:
            definition = self.durable.registry.orchestrator(inst.name)
        except UnknownNameError as exc:
            # scheduled by name where the code is not imported: decided here, as for a version
            if versioning.failure_strategy is VersionFailureStrategy.REJECT:
                return _Rejected(inst.name, version, unknown_name=True)
            return self._fail_before_running(inst, consumed, exc, now)
        admitted = limits.admission(self.durable, ep, definition, current, now)
        if admitted is None:  # waits for a slot of its concurrency limit: nothing to commit
            return None
        state = self.cache.take(inst.instance_id, inst.execution_id, inst.history_len)
        if state is None:
            state = Orchestration(definition.fn, inst.instance_id,
                                  default_version=self.durable.default_version,
                                  version_of=self.durable.version_for,
                                  max_payload_bytes=self.durable.settings.max_payload_bytes)
        if state.history_length < inst.history_len:  # cold, or warm but behind the store
            history = ep.load_history(state.history_length)
            self.events_processed += len(history)
            state.replay(history)
        self.events_processed += len(current)
        result = state.run([row.event for row in current], now)
        if any(map(local_activities.is_local, result.actions)):
            local = local_activities.run_local_activities(
                self.durable, inst.instance_id, inst.execution_id, state, result, now)
            result, now = local.result, local.now
        plan = self._plan_result(inst, state, result, consumed, now)
        resend_after_resume(self.durable, ep, inst, result.new_events, plan.commit)
        plan.started = state.started
        limits.after_commit_plan(self.durable, ep, definition, plan.commit, admitted, now)
        return plan

    def _fail_before_running(self, inst: Any, consumed: list[int], exc: Exception,
                             now: datetime) -> _Plan:
        failure = FailureDetails(str(exc), type(exc).__name__)
        commit = EpisodeCommit(status=Status.FAILED, consumed_inbox_ids=consumed,
                               failure=failure, completed_at=now, delete_timers=True)
        self._notify_parent(inst, commit, Status.FAILED, None, failure, now)
        return _Plan(commit, inst.execution_id)

    def _plan_result(self, inst: Any, state: Orchestration, result: EpisodeResult,
                     consumed: list[int], now: datetime) -> _Plan:
        status = result.status
        commit = EpisodeCommit(
            status=status, new_events=result.new_events, consumed_inbox_ids=consumed,
            output=result.output, failure=result.failure, custom_status=result.custom_status,
            completed_at=now if status.is_terminal else None, delete_timers=status.is_terminal)
        for discarded, reason in result.discarded:
            logger.log(logging.ERROR if "unknown task id" in reason else logging.INFO,
                       "instance %s: dropped %s: %s", inst.instance_id, discarded.describe(),
                       reason)
        can = result.continue_as_new
        if can is not None:
            return self._plan_continue_as_new(inst, commit, result, now)
        for action in result.actions:
            self._plan_action(inst, inst.execution_id, action, commit, now)
        if status.is_terminal:
            self._notify_parent(inst, commit, status, result.output, result.failure, now)
            return _Plan(commit, inst.execution_id)
        return _Plan(commit, inst.execution_id, state)

    def _plan_continue_as_new(self, inst: Any, commit: EpisodeCommit, result: EpisodeResult,
                              now: datetime) -> _Plan:
        can = result.continue_as_new
        assert can is not None
        execution_id = uuid.uuid4().hex
        generation = inst.generation + 1
        commit.new_events = []
        commit.new_execution = (execution_id, generation)
        commit.delete_timers = True
        start = h.execution_started(inst.name, can.input, now, version=can.version,
                                    parent_instance_id=inst.parent_instance_id,
                                    parent_task_id=inst.parent_task_id, generation=generation)
        items = [InboxItem(f"start:{execution_id}", start, execution_id)]
        items += [InboxItem(f"start:{execution_id}:{i}", event, execution_id)
                  for i, event in enumerate(can.carryover)]
        commit.notify.extend((inst.instance_id, item) for item in items)
        commit.outbox.append(self._episode_message(inst.instance_id, inst.name))
        for action in result.actions:  # sent before it continued as new: sent all the same
            if isinstance(action, (TerminateOrchestration, SignalEntity, UnlockEntities,
                                   SendEvent)):
                self._plan_action(inst, inst.execution_id, action, commit, now)
        return _Plan(commit, execution_id)

    def _plan_action(self, inst: Any, execution_id: str, action: Action, commit: EpisodeCommit,
                     now: datetime) -> None:
        registry = self.durable.registry
        iid = inst.instance_id
        if isinstance(action, ENTITY_ACTIONS):
            plan_entity_action(self.durable, inst, execution_id, action, commit, now)
        elif isinstance(action, ScheduleActivity):
            try:
                queue = registry.activity(action.name).queue
            except UnknownNameError as exc:
                self._fail_task(inst, execution_id, action.task_id, exc, commit, now)
                return
            if action.local:  # over the batch's bounds: the next batch runs where it lands
                queue = self.durable.episode_queue(inst.name)
            commit.outbox.append(messages.activity_message(iid, execution_id, action, queue,
                                                             inst.name))
        elif isinstance(action, ScheduleTask):
            if action.name in registry.activities:
                self._fail_task(inst, execution_id, action.task_id, TaskCallError(
                    f"{action.name!r} is an activity, and call_task sends plain Celery tasks "
                    "with their own arguments: call it with ctx.call_activity"), commit, now)
                return
            commit.outbox.append(messages.plain_task_message(
                iid, execution_id, action, inst.name, self.durable.episode_queue(inst.name)))
        elif isinstance(action, CreateTimer):
            near = action.fire_at - now <= self.durable.settings.timer_horizon
            commit.timers.append(TimerRow(action.task_id, action.fire_at,
                                          dispatched_at=now if near else None))
            if near:
                commit.outbox.append(messages.timer_message(
                    iid, execution_id, action.task_id, action.fire_at,
                    timer_queue(self.durable)))
        elif isinstance(action, ScheduleSubOrchestration):
            # the child may be an orchestrator this worker does not import (called by name):
            # the worker that runs the child's episode decides, as for any instance
            child_def = registry.orchestrators.get(action.name)
            child = NewInstance(instance_id=action.instance_id, name=action.name,
                                version=action.version, input=action.input,
                                parent_instance_id=iid, parent_task_id=action.task_id,
                                parent_execution_id=execution_id, created_at=now)
            start = h.execution_started(action.name, action.input, now, version=action.version,
                                        parent_instance_id=iid, parent_task_id=action.task_id)
            commit.children.append((child, [start]))
            commit.outbox.append(self._episode_message(action.instance_id, action.name,
                                                       child_def.queue if child_def else None))
        elif isinstance(action, SendEvent):
            send_event(self.durable, inst.instance_id, execution_id, action, commit, now)
        elif isinstance(action, TerminateOrchestration):
            event = h.execution_terminated(now, action.output, action.recursive)
            commit.notify.append((action.instance_id,
                                  InboxItem(f"terminate:{uuid.uuid4().hex}", event)))
            commit.outbox.append(self._episode_message(action.instance_id, ""))

    def _fail_task(self, inst: Any, execution_id: str, task_id: int, exc: Exception,
                   commit: EpisodeCommit, now: datetime, kind: str = h.TASK_FAILED) -> None:
        failure = FailureDetails(str(exc), type(exc).__name__)
        event = (h.task_failed(task_id, failure, now) if kind == h.TASK_FAILED
                 else h.sub_orchestration_failed(task_id, failure, now))
        commit.notify.append((inst.instance_id, completion_item(execution_id, event)))
        commit.outbox.append(self._episode_message(inst.instance_id, inst.name))

    def _notify_parent(self, inst: Any, commit: EpisodeCommit, status: OrchestrationStatus,
                       output: Any, failure: FailureDetails | None, now: datetime) -> None:
        parent, task_id = inst.parent_instance_id, inst.parent_task_id
        if parent is None or task_id is None:
            return
        if status is Status.COMPLETED:
            event = h.sub_orchestration_completed(task_id, output, now)
        else:
            if failure is None:
                failure = FailureDetails(f"sub-orchestration {inst.instance_id!r} was "
                                         f"{status.value.lower()}", "OrchestrationTerminated")
            event = h.sub_orchestration_failed(task_id, failure, now)
        item = InboxItem(f"child:{inst.instance_id}:{task_id}", event, inst.parent_execution_id)
        commit.notify.append((parent, item))
        record = self.durable.store.get_instance(parent)
        commit.outbox.append(self._episode_message(parent, record.name if record else ""))

    def _episode_message(self, instance_id: str, name: str,
                         queue: str | None = None) -> messages.Message:
        if queue is not None:
            return messages.episode_message(instance_id, name, queue)
        return self.durable.episode_message(instance_id, name)


def _execution_version(inst: Any, rows: Sequence[InboxRow]) -> str | None:
    """The version of the execution an episode runs: that of its start while it has not started
    (continue-as-new may change it), else the instance's."""
    if inst.history_len == 0:
        for row in rows:
            if row.event.kind == h.EXECUTION_STARTED and isinstance(row.event.data, dict):
                return row.event.data.get("version")
    return inst.version


def _mismatch(inst: Any, version: str | None,
              versioning: VersioningOptions) -> VersionMismatchError:
    return VersionMismatchError(
        f"instance {inst.instance_id!r} of orchestrator {inst.name!r} has version {version!r}, "
        f"which this worker (version {versioning.version!r}, match strategy "
        f"{versioning.match_strategy.value}) does not run, so failure strategy "
        f"{versioning.failure_strategy.value} failed it; run such instances on a worker of a "
        "matching version, or use VersionFailureStrategy.REJECT to keep them waiting for one")
