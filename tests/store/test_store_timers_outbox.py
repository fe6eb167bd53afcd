"""Durable timers (due, dispatched once) and the outbox sweep."""

from __future__ import annotations

import threading
from datetime import timedelta

from store_helpers import RUNNING, at, drain, now, running

from celery_durable.store import EpisodeCommit, Store, TimerRow


def test_due_timers_and_dispatch_once(store: Store) -> None:
    a = running(store, "a")
    b = running(store, "b")
    drain(store, "a", timers=[TimerRow(1, at(30)), TimerRow(2, at(10))])
    drain(store, "b", timers=[TimerRow(1, at(20)), TimerRow(2, at(99))])
    due = store.due_timers(at(30), limit=10)
    assert [(t.instance_id, t.task_id, t.fire_at) for t in due] == \
        [("a", 2, at(10)), ("b", 1, at(20)), ("a", 1, at(30))]
    assert {t.execution_id for t in due} == {a.execution_id, b.execution_id}
    assert [t.task_id for t in store.due_timers(at(30), limit=1)] == [2]
    keys = [t.key for t in due]
    assert store.mark_timers_dispatched(keys[:2] + keys[:1], at(31)) == keys[:2]
    assert store.mark_timers_dispatched(keys, at(32)) == keys[2:]
    assert store.mark_timers_dispatched(keys + [("zz", "x", 1)], at(33)) == []
    assert store.due_timers(at(100), limit=10)[0].key == ("b", b.execution_id, 2)


def test_concurrent_dispatchers_dispatch_each_timer_once(store: Store) -> None:
    running(store, "many")
    drain(store, "many", timers=[TimerRow(i, at(i % 17)) for i in range(240)])
    claimed: list[list[tuple[str, str, int]]] = [[], [], []]
    start = threading.Barrier(len(claimed))

    def dispatcher(mine: list[tuple[str, str, int]]) -> None:
        start.wait(10)
        while due := store.due_timers(at(100), limit=40):
            mine.extend(store.mark_timers_dispatched([t.key for t in due], now()))

    threads = [threading.Thread(target=dispatcher, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [key for mine in claimed for key in mine]
    assert len(everything) == len(set(everything)) == 240


def test_pending_outbox_is_oldest_first_and_deleted_once_published(store: Store) -> None:
    running(store, "out")
    with store.episode("out") as ep:
        assert ep is not None
        ids = ep.commit(EpisodeCommit(status=RUNNING, outbox=[{"n": n} for n in range(5)]))
    later = now() + timedelta(seconds=1)
    assert store.pending_outbox(now() - timedelta(minutes=1), 10) == []
    assert [m["n"] for _, _, m in store.pending_outbox(later, 3)] == [0, 1, 2]
    store.delete_outbox(ids[:3])
    store.delete_outbox([])
    assert store.pending_outbox(later, 10) == [(ids[3], "out", {"n": 3}),
                                               (ids[4], "out", {"n": 4})]
