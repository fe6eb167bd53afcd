"""The SQL store: schema, engines, and the `Store` every other layer writes through."""

from celery_durable.store.engine import StatementCount, make_engine
from celery_durable.store.episode import Episode, WakeupClaim
from celery_durable.store.records import (
    Delivery,
    EpisodeCommit,
    InboxItem,
    InboxRow,
    InstanceRecord,
    NewInstance,
    TimerRow,
)
from celery_durable.store.store import Store

__all__ = [
    "Delivery",
    "Episode",
    "EpisodeCommit",
    "InboxItem",
    "InboxRow",
    "InstanceRecord",
    "NewInstance",
    "StatementCount",
    "Store",
    "TimerRow",
    "WakeupClaim",
    "make_engine",
]
