"""Retention in the runtime: ``purge_orchestrations_by`` (the client, ``durable purge --status``)
and the sweeper's part (``durable_retention``, and re-dispatch records that have served).

Both delete in batches of `celery_durable.store.retention.BATCH` instances, one short transaction
each, so that a purge of a hundred thousand instances never holds a lock for long (see
`celery_durable.store.retention`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from celery_durable.engine.history import utc
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import OrchestrationStateError
from celery_durable.store.retention import BATCH, ended_statuses

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable
    from celery_durable.store import Store

logger = logging.getLogger(__name__)
#: batches one sweep deletes at most (the rest waits for the next sweeps)
SWEEP_BATCHES = 10
StatusFilter = OrchestrationStatus | str | Sequence[OrchestrationStatus | str] | None


def checked_statuses(runtime_status: StatusFilter) -> list[str]:
    """The end statuses named (all of them for None); `OrchestrationStateError` for others."""
    if runtime_status is None:
        items = None
    elif isinstance(runtime_status, (str, OrchestrationStatus)):
        items = [runtime_status]
    else:
        items = list(runtime_status)
    try:
        return ended_statuses(None if items is None else [OrchestrationStatus(s).value
                                                          for s in items])
    except ValueError as exc:
        raise OrchestrationStateError(str(exc)) from None


def purge_by(store: Store, *, created_time_from: datetime | None = None,
             created_time_to: datetime | None = None, runtime_status: StatusFilter = None,
             recursive: bool = False, ended_before: datetime | None = None) -> int:
    """Delete every ended instance matching the filters, batch by batch; return how many."""
    statuses = checked_statuses(runtime_status)
    total = 0
    while True:
        deleted = store.purge_ended(
            statuses=statuses, recursive=recursive, ended_before=ended_before,
            created_from=utc(created_time_from) if created_time_from else None,
            created_to=utc(created_time_to) if created_time_to else None)
        if not deleted:
            return total
        total += deleted


def sweep_retention(durable: Durable, now: datetime) -> int:
    """The sweeper's part: forget re-dispatch records that have served; with
    ``durable_retention`` set, delete up to `SWEEP_BATCHES` batches of instances that ended
    longer ago than it. Returns how many instances were deleted."""
    store = durable.store
    store.forget_settled_redispatches()
    retention: timedelta | None = durable.settings.retention
    if retention is None:
        return 0
    total = 0
    for _ in range(SWEEP_BATCHES):
        deleted = store.purge_ended(ended_before=now - retention, limit=BATCH)
        total += deleted
        if deleted < BATCH:
            break
    return total
