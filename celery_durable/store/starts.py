"""An execution's start: its ``ExecutionStarted`` history event, read alone.

What the start keeps (the trace context of `celery_durable.tracing`) is needed where a message
was rebuilt from history without it (``recover``, the sweeper's re-dispatch): one query on the
history's primary key, the first event of that execution in ``seq`` order.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from celery_durable.engine import history as h
from celery_durable.store.records import history_event
from celery_durable.store.schema import history


def execution_start(conn: Connection, instance_id: str,
                    execution_id: str) -> h.HistoryEvent | None:
    """The ``ExecutionStarted`` of ``execution_id`` of ``instance_id``, or None."""
    row = conn.execute(
        select(history).where(history.c.instance_id == instance_id,
                              history.c.execution_id == execution_id,
                              history.c.kind == h.EXECUTION_STARTED)
        .order_by(history.c.seq).limit(1)).mappings().first()
    return None if row is None else history_event(row)
