"""The client's entity methods (`DurableClient` inherits them): signal, read, list, clean."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery_durable.engine.entity_id import EntityInstanceId, entity_id_of
from celery_durable.engine.entity_messages import SIGNAL, EntityRequest
from celery_durable.engine.history import utc
from celery_durable.entity import CleanEntityStorageResult, EntityMetadata
from celery_durable.runtime import messages
from celery_durable.state import Page
from celery_durable.store import InboxItem
from celery_durable.store.entities import DELAYED, EntityRecord

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable


def to_metadata(record: EntityRecord, include_state: bool = True) -> EntityMetadata:
    return EntityMetadata(EntityInstanceId.parse(record.instance_id), record.updated_at,
                          record.locked_by, record.backlog, include_state,
                          record.state if include_state else None)


class EntityClient:
    """Durable entities from outside orchestrations (mixed into `DurableClient`)."""

    durable: Durable

    def signal_entity(self, entity_id: EntityInstanceId | str, operation_name: str, *,
                      input: Any = None, signal_time: datetime | None = None) -> None:
        """Send an operation to an entity (created on its first operation) without waiting
        for it; with ``signal_time`` (an aware datetime; naive is UTC) it runs at that time."""
        eid = str(entity_id_of(entity_id))
        if not isinstance(operation_name, str) or not operation_name:
            raise ValueError(f"an entity operation is a non-empty string, got "
                             f"{operation_name!r}")
        from celery_durable.payload import to_json

        payload = to_json(input, f"input of operation {operation_name!r} of entity {eid}",
                          limit=self.durable.settings.max_payload_bytes)
        runtime = self.durable.entities
        now = runtime.now()
        key = uuid.uuid4().hex
        when = None if signal_time is None else utc(signal_time)
        if when is not None and when > now:
            request = EntityRequest(SIGNAL, operation_name, payload, signal_time=when,
                                    timer=key)
            timer, timer_messages = runtime.delayed(eid, key, when, now)
            self.durable.store.entities.deliver(
                eid, [InboxItem(f"{DELAYED}{key}", request.to_event(now))], [timer])
            messages.publish(self.durable.app, timer_messages)
            return
        request = EntityRequest(SIGNAL, operation_name, payload)
        if self.durable.store.entities.deliver(eid, [InboxItem(f"c:{key}",
                                                               request.to_event(now))]):
            runtime.wake(eid)

    def get_entity(self, entity_id: EntityInstanceId | str, *,
                   include_state: bool = True) -> EntityMetadata | None:
        """The entity's metadata (and state), or None if it does not exist (no state and no
        lock)."""
        record = self.durable.store.entities.get(str(entity_id_of(entity_id)), include_state)
        if record is None or (record.locked_by is None and record.state is None
                              and include_state):
            return None
        return to_metadata(record, include_state)

    def get_all_entities(self, *, name: str | None = None, key_prefix: str | None = None,
                         limit: int = 100, continuation_token: str | None = None,
                         include_state: bool = True) -> Page[EntityMetadata]:
        """Entities (with state or a lock) ordered by id, ``name`` and ``key_prefix``
        narrowing them; pass the page's ``continuation_token`` back for the next page."""
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        if continuation_token is not None:
            EntityInstanceId.parse(continuation_token)  # the last id of the previous page
        records = self.durable.store.entities.query(
            name=name, key_prefix=key_prefix, limit=limit + 1, after=continuation_token,
            include_state=include_state)
        more = len(records) > limit
        records = records[:limit]
        token = records[-1].instance_id if more and records else None
        return Page([to_metadata(r, include_state) for r in records], token)

    def clean_entity_storage(self) -> CleanEntityStorageResult:
        """Remove entities without state, lock or waiting requests, and release the locks of
        orchestrations that have ended or no longer exist (their waiting requests then run)."""
        removed, released = self.durable.store.entities.clean()
        for eid in released:
            self.durable.entities.wake(eid)
        return CleanEntityStorageResult(removed, len(released))
