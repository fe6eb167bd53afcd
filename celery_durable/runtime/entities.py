"""Entity episodes on Celery workers (beside the orchestration episodes of runtime/episode.py).

An entity's episode runs as the task ``celery_durable.entity`` (args: the entity id): it locks
the entity's row, runs the requests waiting in its inbox in arrival order (one at a time, as
`celery_durable.engine.entity_batch` decides), and commits in ONE transaction the new state and
lock, the consumed inbox rows, the results for the calling orchestrations' inboxes, forwarded
lock requests, signals to other entities, orchestrations started and the outbox messages that
wake all of them; the outbox is published after the commit. A message delivered twice finds
the requests already consumed: each operation's state change is committed exactly once.

This module also turns an orchestration's entity actions into inbox rows and messages of the
orchestration's episode commit (`plan_entity_action`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_durable.engine import history as h
from celery_durable.engine.actions import (
    CallEntity,
    EntityAction,
    LockEntities,
    SignalEntity,
    UnlockEntities,
)
from celery_durable.engine.entities import OperationOutcome, SignalOut, run_operation
from celery_durable.engine.entity_batch import BatchResult, run_batch
from celery_durable.engine.entity_id import EntityInstanceId
from celery_durable.engine.entity_messages import CALL, LOCK, SIGNAL, UNLOCK, EntityRequest
from celery_durable.engine.failure import FailureDetails
from celery_durable.entity import entity_definition
from celery_durable.errors import UnknownNameError
from celery_durable.runtime import messages
from celery_durable.store import EpisodeCommit, InboxItem, NewInstance
from celery_durable.store.entities import DELAYED, DelayedTimer, EntityCommit
from celery_durable.versioning import VersionFailureStrategy

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
ENTITY_TASK = "celery_durable.entity"
#: most operations one entity episode runs (the rest run in the next one)
BATCH_LIMIT = 200
_SEEDS = uuid.UUID("0f6f3c86-2f0e-4b8e-bb51-6d3c3d8f0a11")


def entity_message(entity_id: str, queue: str | None) -> messages.Message:
    options: dict[str, Any] = {"argsrepr": repr((entity_id,))}
    if queue:
        options["queue"] = queue
    return {"task": ENTITY_TASK, "args": [entity_id], "options": options}


def result_item(request: EntityRequest, event: h.HistoryEvent) -> InboxItem:
    """A result (or a lock grant) for the orchestration that asked: its dedup key makes a
    second delivery a no-op."""
    return InboxItem(f"entity:{request.caller_execution}:{request.task_id}", event,
                     request.caller_execution)


class EntityRuntime:
    """Entities on one ``Durable``: the entity task, its episodes and the sweeper's share."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        #: entity episodes that committed, and operations they ran (for tests and benches)
        self.episodes = 0
        self.operations = 0
        #: the time entity episodes run at (the test environment's clock replaces it)
        self.now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def register_task(self) -> None:
        runtime = self

        @self.durable.app.task(name=ENTITY_TASK, bind=True, shared=False, acks_late=True,
                               reject_on_worker_lost=True, ignore_result=True)
        def entity_episode(task: Any, entity_id: str) -> None:
            """Run the operations waiting for one durable entity."""
            if not isinstance(entity_id, str) or not entity_id.startswith("@"):
                logger.error("%s: %r is not an entity id ('@name@key'); message dropped",
                             ENTITY_TASK, entity_id)
                return
            runtime.run(entity_id)

    def queue_of(self, entity_id: str) -> str | None:
        definition = entity_definition(entity_id.split("@")[1])
        return (definition.queue if definition else None) or \
            self.durable.settings.episode_queue

    def message(self, entity_id: str) -> messages.Message:
        return entity_message(entity_id, self.queue_of(entity_id))

    def wake(self, entity_id: str) -> None:
        messages.publish(self.durable.app, [self.message(entity_id)])

    # -- an entity's episode -----------------------------------------------------------------
    def run(self, entity_id: str, now: datetime | None = None) -> bool:
        """Run one episode of the entity; False when nothing could run."""
        now = now or self.now()
        durable = self.durable
        eid = EntityInstanceId.parse(entity_id)
        definition = entity_definition(eid.name)
        if definition is None and \
                durable.versioning.failure_strategy is VersionFailureStrategy.REJECT:
            logger.info("entity %s: this worker does not import entity %r; its requests wait "
                        "for a worker that does", entity_id, eid.name)
            return False
        limit = durable.settings.max_payload_bytes

        def operate(request: EntityRequest, state: Any) -> OperationOutcome:
            if definition is None:
                exc = UnknownNameError(
                    f"no entity named {eid.name!r} is registered in this worker; import the "
                    "module that declares it with @entity (-A/--include)")
                return OperationOutcome(state, failure=FailureDetails(str(exc),
                                                                      type(exc).__name__))
            return run_operation(definition.target, eid, state, request.operation or "",
                                 request.input, seed=request.dedup_key,
                                 max_payload_bytes=limit)

        with durable.store.entities.episode(entity_id, eid.name) as ep:
            if not ep.requests:
                return False
            record = ep.record
            batch = run_batch(ep.requests, record.state, record.lock, record.locked_by, now,
                              operate, BATCH_LIMIT)
            if not batch.applied:
                return False
            commit = self._plan(entity_id, batch, now)
            ids = ep.commit(commit)
        self.episodes += 1
        self.operations += sum(a.outcome is not None for a in batch.applied)
        self._publish(commit.outbox, ids)
        return True

    def _publish(self, outbox: list[messages.Message], ids: list[int]) -> None:
        messages.publish_committed(self.durable, outbox, ids)

    def _plan(self, entity_id: str, batch: BatchResult, now: datetime) -> EntityCommit:
        commit = EntityCommit(batch.state, batch.lock)
        woken: set[str] = set()

        def wake_orchestration(instance_id: str, name: str | None) -> None:
            if instance_id not in woken:
                woken.add(instance_id)
                commit.outbox.append(self.durable.episode_message(instance_id, name or ""))

        def wake_entity(target: str) -> None:
            if target not in woken:
                woken.add(target)
                commit.outbox.append(self.message(target))

        for applied in batch.applied:
            request, outcome = applied.request, applied.outcome
            if request.row_id is not None:
                commit.consumed_inbox_ids.append(request.row_id)
            if request.timer is not None:
                commit.done_timers.append(request.timer)
            if outcome is None:
                continue
            if request.kind == CALL and request.caller:
                if outcome.failure is None:
                    event = h.HistoryEvent(h.UNSEQUENCED, h.ENTITY_OPERATION_COMPLETED, now,
                                           request.task_id, None, outcome.result)
                else:
                    event = h.HistoryEvent(h.UNSEQUENCED, h.ENTITY_OPERATION_FAILED, now,
                                           request.task_id, None, outcome.failure.to_json())
                commit.notify.append((request.caller, result_item(request, event)))
                wake_orchestration(request.caller, request.caller_name)
            elif outcome.failure is not None:
                logger.warning("entity %s: signalled %s failed: %s", entity_id,
                               request.describe(), outcome.failure)
            for i, signal in enumerate(outcome.signals):
                seed = f"{entity_id}|{request.dedup_key}|{i}"
                self._send_signal(commit, signal, uuid.uuid5(_SEEDS, seed).hex, now,
                                  wake_entity)
            for start in outcome.starts:
                version = self.durable.version_for(start.name)
                rec = NewInstance(instance_id=start.instance_id, name=start.name,
                                  version=version, input=start.input, created_at=now)
                event = h.execution_started(start.name, start.input, now, version=version)
                commit.starts.append((rec, [event]))
                wake_orchestration(start.instance_id, start.name)
        for request in batch.granted:
            ids = list(request.entities)
            position = ids.index(entity_id) if entity_id in ids else len(ids) - 1
            if position + 1 < len(ids):  # pass the lock request on to the next entity
                target = ids[position + 1]
                commit.notify.append((target, InboxItem(
                    f"lock:{request.caller_execution}:{request.task_id}",
                    request.to_event(now))))
                wake_entity(target)
            elif request.caller:
                event = h.HistoryEvent(h.UNSEQUENCED, h.ENTITY_LOCK_GRANTED, now,
                                       request.task_id, None, {"entities": ids})
                commit.notify.append((request.caller, result_item(request, event)))
                wake_orchestration(request.caller, request.caller_name)
        if batch.waiting and sum(a.outcome is not None for a in batch.applied) >= BATCH_LIMIT:
            wake_entity(entity_id)  # more than one batch was waiting: go on in the next one
        return commit

    def _send_signal(self, commit: EntityCommit, signal: SignalOut, key: str, now: datetime,
                     wake: Any) -> None:
        request = EntityRequest(SIGNAL, signal.operation, signal.input,
                                signal_time=signal.signal_time,
                                timer=key if signal.signal_time is not None else None)
        if signal.signal_time is None or signal.signal_time <= now:
            commit.notify.append((signal.entity_id, InboxItem(f"e:{key}", request.to_event(now))))
            wake(signal.entity_id)
            return
        timer, messages_ = self.delayed(signal.entity_id, key, signal.signal_time, now)
        commit.notify.append((signal.entity_id,
                              InboxItem(f"{DELAYED}{key}", request.to_event(now))))
        commit.new_timers.append(timer)
        commit.outbox.extend(messages_)

    def delayed(self, entity_id: str, key: str, fire_at: datetime,
                now: datetime) -> tuple[DelayedTimer, list[messages.Message]]:
        """The timer of a delayed signal and, when it is near, its message (far ones are sent
        by the sweeper as they come within the timer horizon)."""
        settings = self.durable.settings
        near = fire_at - now <= settings.timer_horizon
        timer = DelayedTimer(entity_id, key, fire_at, now if near else None)
        if not near:
            return timer, []
        return timer, [messages.timer_message(entity_id, key, 0, fire_at,
                                              self.queue_of(entity_id))]

    # -- the sweeper's share ------------------------------------------------------------------
    def sweep(self, older_than: datetime) -> int:
        """Wake entities whose requests have waited since before ``older_than`` with no
        wake-up on its way; returns how many were woken."""
        store = self.durable.store
        woken = 0
        for entity_id, _ in store.entities.with_inbox(older_than):
            store.forget_wakeups([entity_id])
            if store.entities.deliver(entity_id, []):
                self.wake(entity_id)
                woken += 1
        return woken


def plan_entity_action(durable: Durable, inst: Any, execution_id: str, action: EntityAction,
                       commit: EpisodeCommit, now: datetime) -> None:
    """An orchestration's entity action as rows of its episode's commit: the request in the
    entity's inbox (or each entity's, for an unlock) and the entity's wake-up."""
    runtime: EntityRuntime = durable.entities
    caller = {"caller": inst.instance_id, "caller_execution": execution_id,
              "caller_name": inst.name}
    if isinstance(action, (CallEntity, SignalEntity)):
        kind = CALL if isinstance(action, CallEntity) else SIGNAL
        request = EntityRequest(kind, action.operation, action.input, task_id=action.task_id,
                                **caller)
        targets = [(action.entity_id, f"o:{execution_id}:{action.task_id}")]
    elif isinstance(action, LockEntities):
        request = EntityRequest(LOCK, task_id=action.task_id, entities=action.entity_ids,
                                **caller)
        targets = [(action.entity_ids[0], f"lock:{execution_id}:{action.task_id}")]
    else:
        assert isinstance(action, UnlockEntities)
        request = EntityRequest(UNLOCK, task_id=action.lock_task_id, **caller)
        targets = [(e, f"unlock:{execution_id}:{action.lock_task_id}")
                   for e in action.entity_ids]
    event = request.to_event(now)
    for target, key in targets:
        commit.notify.append((target, InboxItem(key, event)))
        commit.outbox.append(runtime.message(target))
