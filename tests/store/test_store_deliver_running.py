"""`Store.deliver_running`: what the client's events, suspend, resume and terminate write (one
statement on PostgreSQL), and the woken episode's lock that releases the wake-up claim."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from store_helpers import (
    create,
    drain,
    finished,
    now,
    running,
    wait_for_lock_wait,
    woken_episode,
)

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.store import Delivery, EpisodeCommit, InboxItem, Store
from celery_durable.store.schema import instances

SUSPENDED = OrchestrationStatus.SUSPENDED


def event(n: int) -> InboxItem:
    return InboxItem(f"e{n}", h.event_raised("go", n, now()))


def inbox_keys(store: Store, instance_id: str) -> list[str]:
    with store.episode(instance_id, wait=True) as ep:  # read only: leaves without a commit
        assert ep is not None
        return [row.dedup_key for row in ep.inbox]


def test_a_running_instance_receives_the_items_and_one_wake_up_is_claimed(
        store: Store) -> None:
    running(store, "a", name="orders")
    first = store.deliver_running("a", [event(1)])
    assert first == Delivery("orders", OrchestrationStatus.RUNNING, claimed=True)
    second = store.deliver_running("a", [event(2), event(1)])  # e1 again: skipped
    assert second == Delivery("orders", OrchestrationStatus.RUNNING, claimed=False)
    assert store.inbox_size("a") == 2
    assert store.request_wakeup("a") is False  # still on its way


def test_an_ended_instance_receives_nothing_and_says_so(store: Store) -> None:
    finished(store, "done", name="orders")
    delivery = store.deliver_running("done", [event(1)])
    assert delivery == Delivery("orders", OrchestrationStatus.COMPLETED, claimed=False)
    assert store.inbox_size("done") == 0
    assert store.request_wakeup("done") is True  # no claim was left behind


def test_an_unknown_instance_gives_none_and_nothing_is_written(store: Store) -> None:
    assert store.deliver_running("nobody", [event(1)]) is None
    assert store.inbox_size("nobody") == 0
    assert store.request_wakeup("nobody") is True  # (the claim table has no foreign key)


def test_a_suspended_or_pending_instance_receives_the_items(store: Store) -> None:
    """A suspended instance buffers every event; a pending one has not started yet."""
    running(store, "held")
    drain(store, "held", SUSPENDED)
    create(store, "new")
    held = store.deliver_running("held", [event(1)])
    new = store.deliver_running("new", [event(1)])
    assert held is not None and held.status is SUSPENDED and held.claimed
    assert new is not None and new.status is OrchestrationStatus.PENDING and new.claimed
    assert inbox_keys(store, "held") == ["e1"]
    assert inbox_keys(store, "new") == ["start", "e1"]


def test_delivering_to_a_running_instance_is_one_statement_on_postgresql(store: Store) -> None:
    running(store, "a")
    finished(store, "done")
    with store.statement_count() as count:
        assert store.deliver_running("a", [event(1), event(2)]) is not None
        assert store.deliver_running("done", [event(1)]) is not None
        assert store.deliver_running("nobody", []) is None
    if store.dialect == "postgresql":
        assert len(count.statements) == 3, count.statements
    else:  # a transaction each: the status read, then (running) the insert and the claim
        assert len([s for s in count.statements if "durable_" in s]) == 3 + 1 + 1, \
            count.statements


def test_a_woken_episode_on_postgresql_locks_and_releases_the_claim_in_one_statement(
        store: Store) -> None:
    running(store, "a")
    assert store.deliver_running("a", [event(1)]) is not None
    with store.statement_count() as count, store.episode("a", wait=True) as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status=OrchestrationStatus.RUNNING,
                                consumed_inbox_ids=[r.id for r in ep.inbox if r.id]))
    if store.dialect == "postgresql":  # lock and release, read the inbox, commit
        assert len(count.statements) == 3, count.statements
    assert store.inbox_size("a") == 0
    assert store.request_wakeup("a") is True  # released


def test_a_woken_episode_releases_the_claim_only_once_it_holds_the_lock(store: Store) -> None:
    """While a woken episode waits for the instance's lock, the claim stays on its way: a
    delivery meanwhile sends no second wake-up and does not wait (the claim's release would
    hold back a delivery until that episode commits)."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time")
    running(store, "a")
    assert store.request_wakeup("a") is True
    seen: list[list[str]] = []
    with store.engine.connect() as holder:
        tx = holder.begin()
        holder.execute(select(instances.c.instance_id).where(instances.c.instance_id == "a")
                       .with_for_update())
        episode = woken_episode(store, "a", seen)
        wait_for_lock_wait(store)
        delivered: list[Delivery | None] = []
        delivery = threading.Thread(
            target=lambda: delivered.append(store.deliver_running("a", [event(1)])))
        delivery.start()
        delivery.join(10)
        assert delivered and delivered[0] is not None and delivered[0].claimed is False
        tx.commit()
    episode.join(10)
    assert seen == [["e1"]]
    assert store.request_wakeup("a") is True
