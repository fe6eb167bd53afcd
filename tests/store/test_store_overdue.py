"""Overdue tasks: scheduled activities and due timers without a completion, and their claims."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import text
from store_helpers import COMPLETED, RUNNING, drain, now, running

from celery_durable.engine import history as h
from celery_durable.store import EpisodeCommit, InboxItem, Store, TimerRow

BOUND = timedelta(seconds=30)


def scheduled(seq: int, task_id: int, ago: float) -> h.HistoryEvent:
    return h.HistoryEvent(seq, h.TASK_SCHEDULED, now() - timedelta(seconds=ago), task_id, "act",
                          {"input": task_id, "attempt": 1})


def timer(seq: int, task_id: int, ago: float, fires_in: float) -> h.HistoryEvent:
    fire_at = now() + timedelta(seconds=fires_in)
    return h.HistoryEvent(seq, h.TIMER_CREATED, now() - timedelta(seconds=ago), task_id, None,
                          {"fire_at": fire_at.isoformat()})


def commit(store: Store, instance_id: str, events: list[h.HistoryEvent],
           timers: Sequence[TimerRow] = ()) -> None:
    with store.episode(instance_id) as ep:
        assert ep is not None
        first = ep.instance.history_len
        events = [e.with_seq(first + i) for i, e in enumerate(events)]
        ep.commit(EpisodeCommit(status=RUNNING, new_events=events, timers=list(timers)))


def test_overdue_tasks_are_the_old_ones_without_a_completion(store: Store) -> None:
    record = running(store, "late")
    eid = record.execution_id
    old, recent = 100, 1
    commit(store, "late", [
        scheduled(0, 1, old),                      # overdue
        timer(0, 2, old, fires_in=-old),           # overdue: sent, due long ago, not fired
        scheduled(0, 3, recent),                   # not yet
        scheduled(0, 4, old),                      # completed in history
        scheduled(0, 5, old),                      # completion waits in the inbox
        timer(0, 6, old, fires_in=3600),           # not due
        timer(0, 7, old, fires_in=-old),           # due but never sent: the sweeper's job
        h.task_completed(4, "r", now()),
    ], timers=[TimerRow(2, now() - timedelta(seconds=old), dispatched_at=now()),
               TimerRow(6, now() + timedelta(hours=1), dispatched_at=now()),
               TimerRow(7, now() - timedelta(seconds=old))])
    store.append_inbox("late", [InboxItem(f"task:{eid}:5", h.task_completed(5, "r", now()),
                                          eid)])
    running(store, "ended")
    commit(store, "ended", [scheduled(0, 1, old)])
    drain(store, "ended", COMPLETED)

    found = store.overdue_tasks(now() - BOUND, now())
    assert [(t.instance_id, t.task_id, t.kind) for t in found] == [
        ("late", 1, h.TASK_SCHEDULED), ("late", 2, h.TIMER_CREATED)]
    activity = found[0]
    assert (activity.name, activity.data, activity.orchestrator, activity.execution_id,
            activity.next_check_at, activity.redispatched) == (
        "act", {"input": 1, "attempt": 1}, "orch", eid, None, 0)


def test_one_sweeper_claims_a_task_once_per_bound(store: Store) -> None:
    running(store, "late")
    commit(store, "late", [scheduled(0, 1, 100)])
    t0 = now()
    found = store.overdue_tasks(t0 - BOUND, t0)
    assert [t.task_id for t in store.claim_overdue(found, t0, BOUND)] == [1]
    assert store.claim_overdue(found, t0, BOUND) == []  # another sweeper, same look
    assert store.overdue_tasks(t0 - BOUND, t0) == []  # claimed until t0 + BOUND
    later = t0 + BOUND + timedelta(seconds=1)
    (again,) = store.overdue_tasks(later - BOUND, later)
    assert again.next_check_at is not None and again.redispatched == 0
    assert store.claim_overdue([again], later, BOUND) == [again]
    assert store.claim_overdue([again], later, BOUND) == []
    store.mark_redispatched([again], later, BOUND)
    # each re-dispatch doubles the wait before the next check
    assert store.overdue_tasks(later + BOUND, later + BOUND * 1.5) == []
    (third,) = store.overdue_tasks(later + BOUND, later + BOUND * 2)
    assert third.redispatched == 1


def test_a_completion_ends_it_and_purge_deletes_the_claims(store: Store) -> None:
    record = running(store, "late")
    commit(store, "late", [scheduled(0, 1, 100)])
    t0 = now()
    store.claim_overdue(store.overdue_tasks(t0 - BOUND, t0), t0, BOUND)
    later = t0 + BOUND * 2
    store.append_inbox("late", [InboxItem(f"task:{record.execution_id}:1",
                                          h.task_completed(1, "r", now()),
                                          record.execution_id)])
    assert store.overdue_tasks(later - BOUND, later) == []
    drain(store, "late", COMPLETED)
    assert store.purge("late") == 1
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM durable_redispatches")).scalar() == 0
