"""Activity heartbeats in the store (store/heartbeats.py) on every backend: the last details
kept per task, a start that keeps them, stale rows found and claimed once."""

from __future__ import annotations

from datetime import timedelta

from store_helpers import at, running

from celery_durable.engine import history as h
from celery_durable.store import EpisodeCommit, Store
from celery_durable.store.records import TASK_KEY, InboxItem, completion_key


def _schedule(store: Store, instance_id: str, task_id: int) -> str:
    with store.episode(instance_id, wait=True) as ep:
        assert ep is not None
        seq = ep.instance.history_len
        event = h.HistoryEvent(seq, h.TASK_SCHEDULED, at(0), task_id, "steps",
                               {"input": None, "attempt": 1})
        ep.commit(EpisodeCommit(status="RUNNING", new_events=[event]))
        return ep.instance.execution_id


def test_heartbeats_keep_the_last_details_and_stale_ones_are_claimed_once(store: Store) -> None:
    running(store, "hb-1")
    eid = _schedule(store, "hb-1", 3)
    beats = store.heartbeats
    assert beats.last_details("hb-1", eid, 3) is None
    beats.beat("hb-1", eid, 3, at(10))  # a start: no details yet
    beats.beat("hb-1", eid, 3, at(11), {"step": 1})
    beats.beat("hb-1", eid, 3, at(12), {"step": 2})
    beats.beat("hb-1", eid, 3, at(13))  # a later start keeps the details
    assert beats.last_details("hb-1", eid, 3) == {"step": 2}

    assert beats.stale(at(13)) == []  # not older than asked
    (stale,) = beats.stale(at(20))
    assert (stale.instance_id, stale.task_id, stale.name, stale.beat_at) == \
        ("hb-1", 3, "steps", at(13))
    assert beats.claim(stale, at(20)) is True
    assert beats.claim(stale, at(21)) is False  # another sweeper claimed it first
    assert beats.stale(at(20)) == []
    assert [s.task_id for s in beats.stale(at(20) + timedelta(seconds=1))] == [3]


def test_a_completed_activity_is_not_stale(store: Store) -> None:
    running(store, "hb-2")
    eid = _schedule(store, "hb-2", 0)
    store.heartbeats.beat("hb-2", eid, 0, at(1), {"step": 0})
    store.append_inbox("hb-2", [InboxItem(completion_key(TASK_KEY, eid, 0),
                                          h.task_completed(0, "ok", at(2)), eid)])
    assert store.heartbeats.stale(at(100)) == []
