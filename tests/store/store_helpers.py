"""Helpers of the store tests: instances, episodes and fixed times."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from workers import wait_until

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.store import EpisodeCommit, InstanceRecord, NewInstance, Store

RUNNING = OrchestrationStatus.RUNNING
COMPLETED = OrchestrationStatus.COMPLETED


def now() -> datetime:
    return datetime.now(timezone.utc)


def at(seconds: float) -> datetime:
    """A fixed aware UTC time, ``seconds`` after 2030-01-01."""
    return datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)


def start_event(name: str = "orch", input: Any = None) -> h.HistoryEvent:
    return h.execution_started(name, input, now())


def create(store: Store, instance_id: str, name: str = "orch", **kwargs: Any) -> NewInstance:
    """Create an instance with one ExecutionStarted in its inbox; return its NewInstance."""
    rec = NewInstance(instance_id=instance_id, name=name, **kwargs)
    assert store.create_instance(rec, [start_event(name, rec.input)])
    return rec


def drain(store: Store, instance_id: str, status: OrchestrationStatus = RUNNING,
          **commit: Any) -> InstanceRecord:
    """One episode that moves the whole inbox into history and sets ``status``."""
    with store.episode(instance_id, wait=True) as ep:
        assert ep is not None
        first = ep.instance.history_len
        events = [row.event.with_seq(first + i) for i, row in enumerate(ep.inbox)]
        ep.commit(EpisodeCommit(status=status, new_events=events,
                                consumed_inbox_ids=[r.id for r in ep.inbox if r.id is not None],
                                completed_at=now() if status.is_terminal else None, **commit))
    record = store.get_instance(instance_id)
    assert record is not None
    return record


def running(store: Store, instance_id: str, **kwargs: Any) -> InstanceRecord:
    """A RUNNING instance whose history holds its ExecutionStarted."""
    create(store, instance_id, **kwargs)
    return drain(store, instance_id)


def finished(store: Store, instance_id: str, **kwargs: Any) -> InstanceRecord:
    """A COMPLETED instance."""
    create(store, instance_id, **kwargs)
    return drain(store, instance_id, COMPLETED, output="done")


#: sessions of the store's database waiting for a row lock, per server
_LOCK_WAITS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    "mysql": "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'",
}


def wait_for_lock_wait(store: Store, timeout: float = 10.0) -> None:
    """Return once another session of the store's database waits for a lock (a thread of the
    test blocked where it should be), not before: a check that it is still running after a
    while would also pass for a thread that never got that far."""
    query = text(_LOCK_WAITS[store.dialect])

    def waiting() -> bool:
        with store.engine.connect() as conn:
            return bool(conn.execute(query).scalar())

    # not polled faster: MariaDB refreshes information_schema.innodb_trx only when it has not
    # been read for a while (polled every 20 ms it never showed the wait)
    wait_until("a session waiting for a lock", waiting, time.monotonic() + timeout,
               interval=0.25)


def woken_episode(store: Store, instance_id: str, seen: list[list[str]]) -> threading.Thread:
    """A started thread running a woken episode of ``instance_id`` (it waits for the lock) that
    appends the dedup keys of the inbox it read to ``seen``."""
    def run() -> None:
        with store.episode(instance_id, wait=True) as ep:
            assert ep is not None
            seen.append([row.dedup_key for row in ep.inbox])

    thread = threading.Thread(target=run)
    thread.start()
    return thread
