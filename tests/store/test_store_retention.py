"""Retention at the store: purging ended instances by filters in bounded batches, the purged
counts the metrics' counters add, and re-dispatch records that no longer outlive their task."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from store_helpers import COMPLETED, RUNNING, create, drain, now, running

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.store import EpisodeCommit, InboxItem, NewInstance, Store
from celery_durable.store.schema import INSTANCE_TABLES, history, instances, purged

FAILED, TERMINATED = OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED
BOUND = timedelta(seconds=30)


@pytest.fixture
def clean(store: Store) -> Iterator[Store]:
    """The store with no purged counts either (the shared fixture empties instance tables)."""
    with store.engine.begin() as conn:
        conn.execute(purged.delete())
    yield store


def ended(store: Store, instance_id: str, status: OrchestrationStatus = COMPLETED,
          days_ago: float = 0, name: str = "orch", **kwargs: object) -> None:
    create(store, instance_id, name, created_at=now() - timedelta(days=days_ago), **kwargs)
    drain(store, instance_id, status)


def ids(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(instances.c.instance_id)).scalars())


def test_purge_ended_takes_ended_instances_matching_the_filters_batch_by_batch(
        clean: Store) -> None:
    store = clean
    for i in range(5):
        ended(store, f"old-c{i}", COMPLETED, days_ago=40)
    ended(store, "old-f", FAILED, days_ago=40)
    ended(store, "new-c", COMPLETED, days_ago=1)
    create(store, "old-pending", created_at=now() - timedelta(days=50))
    running(store, "old-running", created_at=now() - timedelta(days=50))
    cutoff = now() - timedelta(days=30)
    batches = []
    while deleted := store.purge_ended(statuses=["COMPLETED"], created_to=cutoff, limit=2):
        batches.append(deleted)
    assert batches == [2, 2, 1]
    assert ids(store) == {"old-f", "new-c", "old-pending", "old-running"}
    assert store.purge_ended(created_to=cutoff) == 1  # every end status by default
    assert ids(store) == {"new-c", "old-pending", "old-running"}
    assert store.purge_ended(created_from=now() - timedelta(days=2)) == 1
    assert ids(store) == {"old-pending", "old-running"}  # nothing that has not ended
    assert store.metrics().purged == {("orch", "COMPLETED"): 6, ("orch", "FAILED"): 1}
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(history).where(
            history.c.instance_id.like("old-c%"))).scalar() == 0


def test_a_running_status_is_refused(clean: Store) -> None:
    with pytest.raises(ValueError, match="only ended instances can be purged.*RUNNING"):
        clean.purge_ended(statuses=["COMPLETED", "RUNNING"])


def test_ended_before_goes_by_the_end_time(clean: Store) -> None:
    store = clean
    ended(store, "long-ago", days_ago=90)  # created long ago, ended (below) 10 days ago
    with store.engine.begin() as conn:
        conn.execute(instances.update().where(instances.c.instance_id == "long-ago")
                     .values(completed_at=(now() - timedelta(days=10)).replace(tzinfo=None)))
    ended(store, "just-now", days_ago=90)
    assert store.purge_ended(ended_before=now() - timedelta(days=5)) == 1
    assert ids(store) == {"just-now"}


def test_recursive_takes_ended_descendants_and_keeps_running_ones(clean: Store) -> None:
    store = clean
    running(store, "parent", created_at=now() - timedelta(days=40))
    for child, status in (("parent:a", COMPLETED), ("parent:b", RUNNING)):
        with store.episode("parent") as ep:
            assert ep is not None
            ep.commit(EpisodeCommit(status=RUNNING, children=[(
                NewInstance(child, "child", parent_instance_id="parent", parent_task_id=1),
                [h.execution_started("child", None, now())])]))
        drain(store, child, status)
    drain(store, "parent", COMPLETED)
    assert store.purge_ended(created_to=now() - timedelta(days=30), recursive=True) == 2
    assert ids(store) == {"parent:b"}


def test_a_batch_costs_the_same_statements_whatever_its_size(clean: Store) -> None:
    store = clean
    costs = []
    for n in (3, 30):
        for i in range(n):
            ended(store, f"b{n}-{i}", days_ago=40)
        with store.statement_count() as count:
            assert store.purge_ended(limit=100) == n
        costs.append(count.count)
    assert costs[0] == costs[1]


def test_purge_skips_an_instance_another_transaction_holds(clean: Store) -> None:
    store = clean
    if store.dialect == "sqlite":
        pytest.skip("SQLite has one writer at a time: there is no row lock to skip")
    ended(store, "held", days_ago=40)
    ended(store, "free", days_ago=40)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.episode("held") as ep:  # an episode locks the instance's row
            assert ep is not None
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        assert store.purge_ended() == 1  # at once, without waiting for the holder
        assert ids(store) == {"held"}
    finally:
        release.set()
        holder.join(10)
    assert store.purge_ended() == 1


def test_an_ended_instance_replaced_by_a_new_one_stays_counted(clean: Store) -> None:
    store = clean
    ended(store, "reused", FAILED)
    assert store.create_instance(NewInstance("reused", "orch"),
                                 [h.execution_started("orch", None, now())])
    m = store.metrics()
    assert m.purged == {("orch", "FAILED"): 1}
    assert m.instances == {("orch", "PENDING"): 1}


def test_purge_by_id_counts_too(clean: Store) -> None:
    ended(clean, "one", TERMINATED, name="n")
    assert clean.purge("one") == 1
    assert clean.metrics().purged == {("n", "TERMINATED"): 1}


def test_redispatch_records_go_once_their_task_completed_or_their_instance_ended(
        clean: Store) -> None:
    store = clean
    records = {iid: running(store, iid) for iid in ("done", "waiting", "over")}
    for iid in records:
        with store.episode(iid) as ep:
            assert ep is not None
            scheduled = h.HistoryEvent(1, h.TASK_SCHEDULED, now() - timedelta(minutes=5), 1,
                                       "act", {"input": None, "attempt": 1})
            ep.commit(EpisodeCommit(status=RUNNING, new_events=[scheduled]))
    t0 = now()
    claimed = store.claim_overdue(store.overdue_tasks(t0 - BOUND, t0), t0, BOUND)
    assert len(claimed) == 3
    assert store.metrics().redispatch_waiting == 3
    store.append_inbox("done", [InboxItem(f"task:{records['done'].execution_id}:1",
                                          h.task_completed(1, "r", now()),
                                          records["done"].execution_id)])
    assert store.forget_settled_redispatches() == 0  # in the inbox only: not yet in history
    drain(store, "done")
    store.append_inbox("over", [InboxItem("t", h.execution_terminated(now()))])
    drain(store, "over", TERMINATED)
    assert store.forget_settled_redispatches() == 2
    with store.engine.connect() as conn:
        left = conn.execute(text("SELECT instance_id FROM durable_redispatches")).scalars()
        assert list(left) == ["waiting"]
    assert store.metrics().redispatch_waiting == 1


def test_instance_tables_do_not_include_the_purged_counts() -> None:
    assert purged not in INSTANCE_TABLES  # (purge must not delete them)
