"""The store's side of the metrics: what `Store.metrics` reads, in three statements."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from store_helpers import COMPLETED, RUNNING, create, drain, now, running

from celery_durable.engine import history as h
from celery_durable.store import EpisodeCommit, InboxItem, Store, TimerRow
from celery_durable.store.engine import StatementCount
from celery_durable.store.schema import instances, purged


def queries(count: StatementCount) -> list[str]:
    """The statements besides SQLite's BEGIN of a read transaction."""
    return [sql for sql in count.statements if sql.strip().upper() != "BEGIN"]


def _set(store: Store, table: object, instance_id: str, **values: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(table).where(  # type: ignore[arg-type]
            table.c.instance_id == instance_id).values(**values))  # type: ignore[attr-defined]


def test_an_empty_store(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(purged.delete())
    store.metrics()  # (the schema's check, on the store's first use)
    with store.statement_count() as count:
        m = store.metrics()
    assert len(queries(count)) == 3
    assert m.instances == {} and m.purged == {}
    assert (m.oldest_pending, m.oldest_idle_running, m.oldest_inbox_row, m.earliest_due_timer,
            m.oldest_outbox_row) == (None, None, None, None, None)
    assert (m.inbox_rows, m.timers_due, m.redispatch_waiting, m.outbox_rows) == (0, 0, 0, 0)


def test_counts_ages_and_lag(store: Store) -> None:
    t0 = now()
    create(store, "pending", "a")  # its start waits in the inbox
    create(store, "later", "a", start_at=t0 + timedelta(hours=1))  # not due: not pending-late
    sleeping = running(store, "sleeping", name="b")
    with store.episode("sleeping") as ep:  # a timer due in an hour: not idle
        assert ep is not None
        ep.commit(EpisodeCommit(status=RUNNING, timers=[TimerRow(1, t0 + timedelta(hours=1))]))
    late = running(store, "late-timer", name="b")
    with store.episode("late-timer") as ep:  # a timer 90 s overdue, its message lost
        assert ep is not None
        ep.commit(EpisodeCommit(status=RUNNING, timers=[TimerRow(1, t0 - timedelta(seconds=90))],
                                outbox=[{"a": "message"}]))
    fired = running(store, "fired", name="b")
    with store.episode("fired") as ep:  # a timer that fired: in history, not late
        assert ep is not None
        ep.commit(EpisodeCommit(
            status=RUNNING, timers=[TimerRow(1, t0 - timedelta(hours=1))],
            new_events=[h.timer_fired(1, t0, t0).with_seq(fired.history_len)]))
    running(store, "idle", name="b")
    _set(store, instances, "idle", updated_at=(t0 - timedelta(minutes=20)).replace(tzinfo=None))
    create(store, "done", "c")
    drain(store, "done", COMPLETED)
    with store.statement_count() as count:
        m = store.metrics(t0)
    assert len(queries(count)) == 3
    assert m.instances == {("a", "PENDING"): 2, ("b", "RUNNING"): 4, ("c", "COMPLETED"): 1}
    assert m.oldest_pending is not None and abs((t0 - m.oldest_pending).total_seconds()) < 60
    assert m.oldest_idle_running is not None
    assert 1199 < (t0 - m.oldest_idle_running).total_seconds() < 1260  # "idle", 20 min
    assert m.timers_due == 1
    assert m.earliest_due_timer is not None
    assert 89 < (t0 - m.earliest_due_timer).total_seconds() < 91
    assert m.inbox_rows == 2 and m.oldest_inbox_row is not None  # the two starts
    assert m.outbox_rows == 1 and m.oldest_outbox_row is not None
    # the timer's completion in the inbox (not consumed yet): not late any more
    store.append_inbox("late-timer", [InboxItem(f"timer:{late.execution_id}:1",
                                                h.timer_fired(1, t0, t0), late.execution_id)])
    assert store.metrics(t0).timers_due == 0
    assert sleeping.status == RUNNING


def test_a_due_delayed_start_is_a_late_timer_until_it_starts(store: Store) -> None:
    t0 = now()
    create(store, "delayed", "a", start_at=t0 - timedelta(seconds=30))
    m = store.metrics(t0)
    assert m.timers_due == 1 and m.oldest_pending is not None
    drain(store, "delayed")
    assert store.metrics(t0).timers_due == 0
