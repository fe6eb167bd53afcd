"""DurableClient: start, observe and steer orchestration instances."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_durable import management, tracing
from celery_durable.client_schedules import ScheduleMethods
from celery_durable.engine import history as h
from celery_durable.engine.context import name_of
from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.history import HistoryEvent, utc
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.entity_client import EntityClient
from celery_durable.errors import (
    OrchestrationAlreadyExistsError,
    OrchestrationEndedError,
    OrchestrationNotFoundError,
)
from celery_durable.ids import (
    check_event_name,
    check_instance_id,
    check_orchestrator_name,
    check_reason,
    check_start_at,
    check_tags,
)
from celery_durable.payload import from_json, to_json
from celery_durable.runtime import messages
from celery_durable.runtime.retention import purge_by
from celery_durable.runtime.settings import DEFAULT_MAX_PAYLOAD_BYTES
from celery_durable.runtime.start_queue import start_message
from celery_durable.runtime.timer_queue import timer_queue
from celery_durable.state import OrchestrationState, Page
from celery_durable.store import InboxItem, InstanceRecord, NewInstance, Store, WakeupClaim
from celery_durable.store.records import START_TIMER_ID
from celery_durable.transactions import caller_transaction

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
#: the default limit on payloads (input, event data); ``durable_max_payload_bytes`` sets it
MAX_PAYLOAD_BYTES = DEFAULT_MAX_PAYLOAD_BYTES


def _now() -> datetime:
    return datetime.now(timezone.utc)


class DurableClient(ScheduleMethods, EntityClient):
    """Schedules, queries, waits for and steers orchestrations of one ``Durable``; manages its
    schedules (`celery_durable.client_schedules`); signals and reads entities
    (`celery_durable.entity_client`)."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable

    @property
    def store(self) -> Store:
        return self.durable.store

    def _payload(self, value: Any, what: str) -> Any:
        return to_json(value, what, limit=self.durable.settings.max_payload_bytes)

    # -- starting ----------------------------------------------------------------------------
    def schedule_new_orchestration(self, orchestrator: Any, *, input: Any = None,
                                   instance_id: str | None = None,
                                   start_at: datetime | None = None, version: str | None = None,
                                   tags: dict[str, str] | None = None,
                                   session: Any = None) -> str:
        """Create an instance and start it (at ``start_at``, if given); returns its id.

        ``orchestrator`` is a decorated function or a name: this process need not import the
        orchestrator's code. A worker that does not know the name follows its
        `VersionFailureStrategy` (FAIL: the instance fails with `UnknownNameError`; REJECT: it
        waits for a worker that knows it).

        ``session``: a SQLAlchemy ``Session`` or ``Connection`` on the store's database whose
        transaction the instance joins: it exists if and only if that transaction commits, and
        it starts after the commit. Inside Django's ``transaction.atomic()`` the block's
        transaction is joined without it (see docs/transactions.md).
        """
        name = check_orchestrator_name(orchestrator if isinstance(orchestrator, str)
                                       else name_of(orchestrator, "orchestrator"))
        instance_id = check_instance_id(uuid.uuid4().hex if instance_id is None else instance_id)
        data = self._payload(input, f"input of orchestration {name!r}")
        check_tags(tags, self.durable.settings.max_payload_bytes)
        if start_at is not None and not isinstance(start_at, datetime):
            raise TypeError(f"start_at must be a datetime, got {start_at!r}")
        start_at = check_start_at(start_at)
        version = version or self.durable.version_for(name)
        with tracing.creating(name, instance_id, version) as trace:
            self._schedule(name, instance_id, data, version, tags, start_at, session, trace)
        return instance_id

    def _schedule(self, name: str, instance_id: str, data: Any, version: str | None,
                  tags: dict[str, str] | None, start_at: datetime | None, session: Any,
                  trace: dict[str, str] | None) -> None:
        now = _now()
        start = tracing.keep_trace(h.execution_started(name, data, now, version=version), trace)
        record = NewInstance(instance_id=instance_id, name=name, version=version, input=data,
                             tags=tags, start_at=utc(start_at) if start_at else None,
                             created_at=now)
        joined = caller_transaction(self.store, session)
        if joined is None:
            self._create(record, start)
            self._start(record, now)
        elif joined.connection is not None:  # the instance's rows go with the caller's
            if not self.store.create_instance_in(joined.connection, record, [start]):
                raise _already_exists(instance_id)
            joined.on_commit(lambda: self._start(record, now))
        else:  # a transaction on another database: create and start once it has committed
            joined.on_commit(lambda: self._start(self._create(record, start), now))

    def _create(self, record: NewInstance, start: HistoryEvent) -> NewInstance:
        if not self.store.create_instance(record, [start]):
            raise _already_exists(record.instance_id)
        return record

    def _start(self, record: NewInstance, now: datetime) -> None:
        """Send the wake-up of a new instance (or, for a later start, its timer)."""
        instance_id, name = record.instance_id, record.name
        if record.start_at is None:
            if self.durable.settings.client_episodes:
                self._episode_here(instance_id, name)
            else:
                messages.publish(self.durable.app, [start_message(self.durable, instance_id, name)])
        elif record.start_at - now <= self.durable.settings.timer_horizon:
            # claim the start timer (so the sweeper does not send it too) and send it as ETA
            key = (instance_id, record.execution_id, START_TIMER_ID)
            if self.store.mark_timers_dispatched([key], now):
                messages.publish(self.durable.app, [messages.timer_message(
                    instance_id, record.execution_id, START_TIMER_ID, record.start_at,
                    timer_queue(self.durable))])

    # -- reading -----------------------------------------------------------------------------
    def get_orchestration_state(self, instance_id: str) -> OrchestrationState | None:
        record = self.store.get_instance(check_instance_id(instance_id))
        return None if record is None else to_state(record)

    def _require(self, instance_id: str) -> InstanceRecord:
        record = self.store.get_instance(check_instance_id(instance_id))
        if record is None:
            raise _not_found(instance_id)
        return record

    def get_orchestration_history(self, instance_id: str) -> list[HistoryEvent]:
        """The current execution's history events, in order."""
        self._require(instance_id)
        return self.store.get_history(instance_id)

    def query_orchestrations(self, *, status: OrchestrationStatus | str |
                             Sequence[OrchestrationStatus | str] | None = None,
                             name: str | None = None, created_from: datetime | None = None,
                             created_to: datetime | None = None, limit: int = 100,
                             continuation_token: str | None = None
                             ) -> Page[OrchestrationState]:
        """Instances matching the filters, oldest first, ``limit`` per page."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValueError(f"limit must be an int from 1 to 10000, got {limit!r}")
        statuses = None
        if status is not None:
            items = [status] if isinstance(status, (str, OrchestrationStatus)) else list(status)
            statuses = [OrchestrationStatus(s).value for s in items]
        after = _decode_token(continuation_token) if continuation_token else None
        records = self.store.query_instances(
            statuses=statuses, name=name, created_from=utc(created_from) if created_from else None,
            created_to=utc(created_to) if created_to else None, limit=limit + 1, after=after)
        more = len(records) > limit
        records = records[:limit]
        token = _encode_token(records[-1]) if more and records else None
        return Page([to_state(r) for r in records], token)

    def wait_for_orchestration_start(self, instance_id: str, *,
                                     timeout: float = 60) -> OrchestrationState:
        """Wait until the instance has left PENDING; TimeoutError after ``timeout`` seconds."""
        return self._wait(instance_id, timeout, lambda s: s is not OrchestrationStatus.PENDING,
                          "start")

    def wait_for_orchestration_completion(self, instance_id: str, *,
                                          timeout: float = 60) -> OrchestrationState:
        """Wait until the instance is COMPLETED, FAILED or TERMINATED."""
        return self._wait(instance_id, timeout, lambda s: s.is_terminal, "complete")

    def _wait(self, instance_id: str, timeout: float, done: Any, what: str) -> OrchestrationState:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            record = self._require(instance_id)
            if done(record.status):
                return to_state(record)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                hint = ""
                if record.status is OrchestrationStatus.PENDING and record.start_at is None:
                    hint = (f"; no worker has started it yet: are workers running that "
                            f"import orchestrator {record.name!r} and consume its queue?")
                raise TimeoutError(f"orchestration {instance_id!r} did not {what} within "
                                   f"{timeout}s (status {record.status.value}){hint}")
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.25)

    # -- steering ----------------------------------------------------------------------------
    def raise_orchestration_event(self, instance_id: str, event_name: str, *,
                                  data: Any = None) -> None:
        """Deliver an external event; events nobody waits for yet are kept in order."""
        check_event_name(event_name)
        payload = self._payload(data, f"data of event {event_name!r}")
        with tracing.raising(instance_id, event_name):
            self._send(instance_id, h.event_raised(event_name, payload, _now()),
                       "raise an event to")

    def suspend_orchestration(self, instance_id: str, *, reason: str | None = None,
                              cancel_running: bool = False) -> None:
        """Hold the instance: results and events wait until it is resumed. With
        ``cancel_running``, the activities and Celery tasks it has running are killed (Celery's
        ``revoke(terminate=True)``) and sent again when it is resumed."""
        reason = check_reason(reason, "suspend", self.durable.settings.max_payload_bytes)
        event = h.execution_suspended(_now(), reason)
        if cancel_running:
            event.data["cancel_running"] = True
        self._send(instance_id, event, "suspend")
        if cancel_running:
            management.revoke(self.durable, management.running_work(self.durable, instance_id,
                                                                     False), True)

    def resume_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        reason = check_reason(reason, "resume", self.durable.settings.max_payload_bytes)
        self._send(instance_id, h.execution_resumed(_now(), reason), "resume")

    def terminate_orchestration(self, instance_id: str, *, output: Any = None,
                                recursive: bool = True, cancel_running: bool = False) -> None:
        """End the instance now with ``output`` (and its running sub-orchestrations). The
        activities and Celery tasks it sent are revoked (workers discard those not started);
        with ``cancel_running``, those running are terminated too (Celery's
        ``revoke(terminate=True)``). A result that still arrives is dropped."""
        payload = self._payload(output, "termination output")
        self._send(instance_id, h.execution_terminated(_now(), payload, recursive), "terminate")
        management.revoke(self.durable, management.running_work(self.durable, instance_id,
                                                                 recursive), cancel_running)

    def restart_orchestration(self, instance_id: str, *,
                              restart_with_new_instance_id: bool = False) -> str:
        """Run the orchestration again from the beginning with its input and version; returns
        the id it runs under: the same id for an ended instance (its history is replaced), a
        new one when asked or when the instance is still running."""
        return management.restart(self, instance_id, restart_with_new_instance_id)

    def rewind_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        """Run a FAILED instance again from its failures: failed activities, Celery tasks and
        sub-orchestrations (rewound in turn) run again, work that succeeded does not; the
        history keeps an ``ExecutionRewound`` record with ``reason``."""
        management.rewind(self.durable, instance_id, reason)

    def _send(self, instance_id: str, event: HistoryEvent, verb: str) -> None:
        item = InboxItem(f"client:{uuid.uuid4().hex}", event)
        if self.durable.settings.client_episodes:
            record = self._require(instance_id)
            _check_running(instance_id, record.status, verb)
            self._episode_here(instance_id, record.name, item)
            return
        # the status check and the delivery are one statement (on PostgreSQL)
        delivery = self.store.deliver_running(check_instance_id(instance_id), [item])
        if delivery is None:
            raise _not_found(instance_id)
        _check_running(instance_id, delivery.status, verb)
        if delivery.claimed:
            self.durable.wake(instance_id, delivery.name)

    def _episode_here(self, instance_id: str, orchestrator: str,
                      item: InboxItem | None = None) -> None:
        """Deliver ``item`` (if any) and run the instance's episode in this process
        (``durable_client_episodes``); when a worker holds the instance or the episode fails
        here, leave the episode to a worker."""
        items = [] if item is None else [item]
        if orchestrator not in self.durable.registry.orchestrators:
            # scheduled by name: the code runs on the workers that know it
            if self.store.deliver(instance_id, items) if items else True:
                self.durable.wake(instance_id, orchestrator)
            return
        claim = WakeupClaim()
        try:
            if self.durable.runner.run(instance_id, items, claim=claim):
                return
            wake = claim.claimed  # the holder left ``item`` in the inbox
        except Exception:
            logger.warning("the episode of orchestration %s failed in this process; a worker "
                           "will run it", instance_id, exc_info=True)
            wake = self.store.deliver(instance_id, items) if items else True
        if wake:
            self.durable.wake(instance_id, orchestrator)

    def purge_orchestration(self, instance_id: str, *, recursive: bool = True) -> int:
        """Delete an ended instance (and its sub-orchestrations); returns instances deleted."""
        return self.store.purge(check_instance_id(instance_id), recursive=recursive)

    def purge_orchestrations_by(self, *, created_time_from: datetime | None = None,
                                created_time_to: datetime | None = None,
                                runtime_status: Any = None, recursive: bool = False) -> int:
        """Delete every ended instance created in [from, to] with one of ``runtime_status``
        (end statuses; None: all of them), in small batches; returns instances deleted."""
        return purge_by(self.store, created_time_from=created_time_from,
                        created_time_to=created_time_to, runtime_status=runtime_status,
                        recursive=recursive)


def _not_found(instance_id: str) -> OrchestrationNotFoundError:
    return OrchestrationNotFoundError(
        f"no orchestration instance has id {instance_id!r}; check the id, or schedule the "
        "orchestration first (it may also have been purged)")


def _check_running(instance_id: str, status: OrchestrationStatus, verb: str) -> None:
    if status.is_terminal:
        raise OrchestrationEndedError(
            f"cannot {verb} orchestration {instance_id!r}: it has already ended ({status.value})")


def _already_exists(instance_id: str) -> OrchestrationAlreadyExistsError:
    return OrchestrationAlreadyExistsError(
        f"an orchestration with id {instance_id!r} is already running (or waiting to "
        "start); choose another id, or wait until it has ended (the id of an ended "
        "instance may be reused: its history is replaced)")


def to_state(record: InstanceRecord) -> OrchestrationState:
    failure = FailureDetails.from_json(record.failure) if record.failure else None
    return OrchestrationState(
        instance_id=record.instance_id, name=record.name, version=record.version,
        runtime_status=record.status, created_at=record.created_at,
        last_updated_at=record.updated_at, input=from_json(record.input),
        output=from_json(record.output), custom_status=from_json(record.custom_status),
        failure_details=failure, parent_instance_id=record.parent_instance_id,
        tags=record.tags, completed_at=record.completed_at)


def _encode_token(record: InstanceRecord) -> str:
    raw = json.dumps([record.created_at.isoformat(), record.instance_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        created, instance_id = json.loads(base64.urlsafe_b64decode(padded))
        return utc(datetime.fromisoformat(created)), str(instance_id)
    except Exception as exc:
        raise ValueError(f"invalid continuation token {token!r}: pass the token of a "
                         "previous page unchanged") from exc
