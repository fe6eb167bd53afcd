"""An episode's last commit (``Episode.commit(..., last=True)``): on PostgreSQL through psycopg
the write and COMMIT go in one round trip (store/pipelines.py), elsewhere the transaction
commits when the block exits. Either way it is atomic, and episodes of one instance stay
serialised by its lock."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event, exc, func, insert, select
from store_helpers import RUNNING, now, running, wait_for_lock_wait

from celery_durable.engine import history as h
from celery_durable.errors import OrchestrationStateError
from celery_durable.store import EpisodeCommit, InboxItem, Store, TimerRow, pipelines
from celery_durable.store.records import history_row
from celery_durable.store.schema import history, outbox, timers


def completion(task_id: int, execution_id: str) -> InboxItem:
    return InboxItem(f"task:{task_id}", h.task_completed(task_id, task_id, now()), execution_id)


def scheduled(seq: int, task_id: int) -> h.HistoryEvent:
    return h.HistoryEvent(seq, h.TASK_SCHEDULED, now(), task_id, "act", {"input": None})


def count(store: Store, table: object, instance_id: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)  # type: ignore[arg-type]
                                .where(table.c.instance_id == instance_id)).scalar_one())  # type: ignore[attr-defined]


def pipelined(store: Store) -> bool:
    return store.dialect == "postgresql"  # the tests' PostgreSQL URLs use psycopg 3


def test_the_last_commit_is_visible_at_once_and_releases_the_lock(store: Store) -> None:
    inst = running(store, "last")
    with store.episode("last") as ep:
        assert ep is not None
        ids = ep.commit(EpisodeCommit(status=RUNNING, new_events=[scheduled(1, 1)],
                                      outbox=[{"m": 1}],
                                      timers=[TimerRow(2, now())]), last=True)
        assert len(ids) == 1
        assert ep.finished is pipelined(store)
        if ep.finished:
            # committed already: another connection sees it, and may lock the instance
            assert store.get_instance("last").history_len == 2  # type: ignore[union-attr]
            with store.episode("last") as other:
                assert other is not None and other.instance.history_len == 2
            with pytest.raises(OrchestrationStateError, match="last commit"):
                ep.commit(EpisodeCommit(status=RUNNING), last=True)
            with pytest.raises(OrchestrationStateError, match="last commit"):
                ep.recheck_inbox()
    assert store.get_instance("last").history_len == 2  # type: ignore[union-attr]
    assert count(store, outbox, "last") == 1 and count(store, timers, "last") == 1
    assert inst.history_len == 1


def test_a_failed_last_commit_writes_nothing_and_keeps_the_extra(store: Store) -> None:
    inst = running(store, "broken")
    # a history row at seq 1 already (written behind the store's back): the episode's own
    # event at seq 1 violates the primary key inside the commit's statement
    with store.engine.begin() as conn:
        conn.execute(insert(history), [history_row("broken", inst.execution_id,
                                                   scheduled(1, 9))])
    item = completion(1, inst.execution_id)
    with pytest.raises(exc.IntegrityError), store.episode("broken", [item]) as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status="COMPLETED", new_events=[scheduled(1, 1)], output="x",
                                outbox=[{"m": 1}], delete_timers=True), last=True)
    after = store.get_instance("broken")
    assert after is not None and after.status == RUNNING and after.history_len == 1
    assert count(store, outbox, "broken") == 0
    assert count(store, history, "broken") == 2  # its row and the stray one: nothing else
    # the completion was kept for the next episode, and the pool's connection still works
    with store.episode("broken") as ep:
        assert ep is not None and [r.dedup_key for r in ep.inbox] == ["task:1"]
        ep.commit(EpisodeCommit(status=RUNNING, consumed_inbox_ids=[ep.inbox[0].id or 0]),
                  last=True)
    assert store.inbox_size("broken") == 0


def test_a_statement_failing_in_the_first_round_trip_undoes_the_others(store: Store) -> None:
    """The lock times out (PostgreSQL's lock_timeout) while another episode holds it: the
    release of the wake-up claim pipelined after it did not happen, and the connection, rolled
    back, serves the next episode."""
    if store.dialect != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's")
    running(store, "held")
    impatient = Store(store.url)
    event.listen(impatient.engine, "connect", _short_lock_timeout)
    try:
        with store.episode("held") as holder:
            assert holder is not None
            assert store.request_wakeup("held")  # claimed: a woken episode releases it
            with pytest.raises(exc.OperationalError, match="lock timeout"), \
                    impatient.episode("held", wait=True):
                pass
            assert not store.request_wakeup("held")  # still claimed: the DELETE was undone
        with impatient.episode("held", wait=True) as ep:
            assert ep is not None and ep.instance.history_len == 1
        assert store.request_wakeup("held")  # released by that episode
    finally:
        impatient.dispose()


def _short_lock_timeout(dbapi_connection: Any, record: Any) -> None:
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    dbapi_connection.execute("SET lock_timeout = '200ms'")
    dbapi_connection.autocommit = autocommit


def test_a_second_episode_waits_for_the_last_commit(store: Store, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite serialises episodes: the second waits for the first")
    inst = running(store, "shared")
    item = completion(1, inst.execution_id)
    seen: list[tuple[int, list[str]]] = []

    def second() -> None:
        with store.episode("shared", wait=True) as ep:
            assert ep is not None
            seen.append((ep.instance.history_len, [r.dedup_key for r in ep.inbox]))

    with store.episode("shared") as holder:
        assert holder is not None
        with store.episode("shared", [item]) as other:  # an inline episode skips it
            assert other is None
        waiter = threading.Thread(target=second)
        waiter.start()
        wait_for_lock_wait(store)  # the woken one waits for the holder's lock
        assert seen == []
        holder.commit(EpisodeCommit(status=RUNNING, new_events=[scheduled(1, 1)]), last=True)
        assert holder.finished is pipelined(store)
        if holder.finished:  # the lock went with the COMMIT
            waiter.join(10)
            assert seen == [(2, ["task:1"])]
    waiter.join(10)
    assert seen == [(2, ["task:1"])]


def test_without_pipelines_the_last_commit_commits_at_the_end(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another PostgreSQL driver (psycopg2, pg8000) has no pipelines: the episode runs its
    statements one by one and commits when its block exits, as on SQLite and MySQL."""
    monkeypatch.setattr(pipelines, "available", lambda conn: False)
    running(store, "plain")
    with store.episode("plain") as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status=RUNNING, new_events=[scheduled(1, 1)], outbox=[{"m": 1}]),
                  last=True)
        assert not ep.finished
        assert store.get_instance("plain").history_len == 1  # type: ignore[union-attr]
    assert store.get_instance("plain").history_len == 2  # type: ignore[union-attr]
    assert count(store, outbox, "plain") == 1
