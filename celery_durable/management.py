"""Repairing and re-running instances: restart, rewind, and revoking the work of a terminated
instance. `DurableClient` calls these; the CLI (``durable restart`` / ``durable rewind``) and the
dashboard go through the client.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_durable import tracing
from celery_durable.engine import history as h
from celery_durable.engine.actions import ScheduleActivity, scheduled_task_of
from celery_durable.engine.history import HistoryEvent
from celery_durable.ids import check_instance_id, check_reason
from celery_durable.runtime import messages
from celery_durable.store import InstanceRecord

if TYPE_CHECKING:
    from celery_durable.client import DurableClient
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)


def restart(client: DurableClient, instance_id: str, new_id: bool) -> str:
    """Start ``instance_id``'s orchestrator again from the beginning with its input and
    version (see `DurableClient.restart_orchestration`); returns the id it runs under."""
    record = client._require(instance_id)
    target = uuid.uuid4().hex if new_id or not record.status.is_terminal else record.instance_id
    # a new trace: the restart is a new run, not a continuation of the old one
    with tracing.creating(record.name, target, record.version) as trace:
        client._schedule(record.name, target, record.input, record.version, record.tags,
                         None, None, trace)
    logger.info("orchestration %s restarted as %s", instance_id, target)
    return target


def rewind(durable: Durable, instance_id: str, reason: str | None) -> None:
    """Rewind FAILED ``instance_id`` (see `DurableClient.rewind_orchestration`)."""
    check_instance_id(instance_id)
    reason = check_reason(reason, "rewind", durable.settings.max_payload_bytes)
    now = datetime.now(timezone.utc)

    def messages_for(record: InstanceRecord, execution_id: str,
                     reopened: list[HistoryEvent]) -> list[messages.Message]:
        return rerun_messages(durable, record, execution_id, reopened)

    outcome = durable.store.rewind(instance_id, reason, now, messages_for)
    try:
        messages.publish(durable.app, outcome.messages)
    except Exception:  # the rows stay in the outbox: the sweeper publishes them
        logger.exception("publishing the messages of rewound %s failed; the sweeper will "
                         "retry", instance_id)
    else:
        durable.store.acknowledge_outbox(outcome.outbox_ids)
    logger.info("rewound %s (%s)", ", ".join(outcome.rewound), reason or "no reason given")


def rerun_messages(durable: Durable, record: InstanceRecord, execution_id: str,
                   reopened: list[HistoryEvent], *, wake: bool = True,
                   id_suffix: str = "") -> list[messages.Message]:
    """The messages of a rewound execution: its reopened activities and Celery tasks (sent
    again under the new execution), then (with ``wake``) the instance's wake-up. With
    ``id_suffix``, the Celery task ids get it (ids that were revoked cannot be used again)."""
    iid, orchestrator = record.instance_id, record.name
    out: list[messages.Message] = []
    for event in reopened:
        if event.kind != h.TASK_SCHEDULED or event.task_id is None:
            continue
        data = event.data if isinstance(event.data, dict) else {}
        call = scheduled_task_of(event.task_id, event.name or "", data)
        if call is not None:
            out.append(messages.plain_task_message(iid, execution_id, call, orchestrator,
                                                   durable.episode_queue(orchestrator)))
            continue
        definition = durable.registry.activities.get(event.name or "")
        action = ScheduleActivity(event.task_id, event.name or "", data.get("input"),
                                  int(data.get("attempt") or 1))
        out.append(messages.activity_message(iid, execution_id, action,
                                             definition.queue if definition else None,
                                             orchestrator))
    if id_suffix:
        for message in out:
            message["options"]["task_id"] += id_suffix
    if wake:
        out.append(durable.episode_message(iid, orchestrator))
    return out


def running_work(durable: Durable, instance_id: str, recursive: bool) -> list[str]:
    """The Celery task ids of the activities and Celery tasks the instance (and, with
    ``recursive``, its running sub-orchestrations) sent and has no result of."""
    store = durable.store
    ids: list[str] = []
    seen: set[str] = set()
    frontier = [instance_id]
    while frontier:
        iid = frontier.pop()
        if iid in seen:
            continue
        seen.add(iid)
        record = store.get_instance(iid)
        if record is None:
            continue
        scheduled: dict[int, HistoryEvent] = {}
        done: set[int] = set()
        for event in store.get_history(iid):
            if event.kind == h.TASK_SCHEDULED and event.task_id is not None:
                scheduled[event.task_id] = event
            elif event.kind in (h.TASK_COMPLETED, h.TASK_FAILED) and event.task_id is not None:
                done.add(event.task_id)
        for task_id, event in scheduled.items():
            if task_id not in done:
                attempt = int((event.data or {}).get("attempt") or 1)
                ids.append(messages.activity_task_id(iid, record.execution_id, task_id,
                                                     attempt))
        if recursive:
            frontier.extend(child.instance_id for child in store.children_of(iid, 1000)
                            if not child.status.is_terminal)
    return ids


def revoke(durable: Durable, celery_ids: list[str], terminate: bool) -> None:
    """Revoke ``celery_ids`` through Celery: messages not yet started are discarded by the
    workers; with ``terminate``, runs in progress are killed (SIGTERM) too."""
    if not celery_ids:
        return
    kwargs: dict[str, Any] = {"terminate": terminate}
    if terminate:
        kwargs["signal"] = "SIGTERM"
    try:
        durable.app.control.revoke(celery_ids, **kwargs)
    except Exception:  # the instance has ended anyway: late results are dropped
        logger.warning("revoking %d task(s) failed; should they run, their results are "
                       "dropped", len(celery_ids), exc_info=True)
        return
    logger.info("revoked %d task(s)%s", len(celery_ids),
                " and terminated those running" if terminate else "")
