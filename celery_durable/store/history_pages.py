"""A page of an instance's history (by ``seq``), for readers that must not load all of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, select

from celery_durable.engine.history import HistoryEvent
from celery_durable.errors import OrchestrationNotFoundError
from celery_durable.store.records import history_event
from celery_durable.store.schema import history, instances

if TYPE_CHECKING:
    from celery_durable.store.store import Store


@dataclass(frozen=True)
class HistoryPage:
    """Events of the current execution in ``seq`` order; how many it has in all, and the
    ``seq`` of its first and last (None when it has none)."""

    events: list[HistoryEvent]
    total: int
    first_seq: int | None
    last_seq: int | None


def history_page(store: Store, instance_id: str, *, after: int | None = None,
                 before: int | None = None, limit: int = 100) -> HistoryPage:
    """Up to ``limit`` events of the instance's current execution: the first ones with a
    ``seq`` above ``after`` (or from the start), or, given only ``before``, the last ones
    below it. Raises `OrchestrationNotFoundError` for an unknown instance."""
    current = and_(instances.c.instance_id == history.c.instance_id,
                   instances.c.execution_id == history.c.execution_id)
    base = select(history).join(instances, current).where(
        history.c.instance_id == instance_id)
    if after is not None:
        base = base.where(history.c.seq > after)
    if before is not None:
        base = base.where(history.c.seq < before)
    backwards = before is not None and after is None
    query = base.order_by(history.c.seq.desc() if backwards else history.c.seq).limit(limit)
    count = select(func.count(), func.min(history.c.seq), func.max(history.c.seq)).select_from(history.join(instances, current)).where(
        history.c.instance_id == instance_id)
    with store._read() as conn:
        if conn.execute(select(instances.c.instance_id).where(
                instances.c.instance_id == instance_id)).first() is None:
            raise OrchestrationNotFoundError(f"no orchestration instance has id {instance_id!r}")
        rows = conn.execute(query).mappings().all()
        total, first, last = conn.execute(count).one()
    events = [history_event(row) for row in rows]
    return HistoryPage(events[::-1] if backwards else events, int(total), first, last)
