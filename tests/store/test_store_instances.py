"""Creating instances, their inbox, queries and purge."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Table, func, select
from store_helpers import COMPLETED, RUNNING, at, create, drain, finished, now, running, start_event

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import (
    InvalidInstanceIdError,
    OrchestrationNotFoundError,
    OrchestrationStateError,
)
from celery_durable.store import EpisodeCommit, InboxItem, NewInstance, Store, TimerRow
from celery_durable.store.schema import history, inbox, instances, outbox, timers


def rows(store: Store, table: Table, instance_id: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)
                                .where(table.c.instance_id == instance_id)).scalar_one())


def test_create_instance_and_read_it_back(store: Store) -> None:
    start_at = now() + timedelta(hours=1)
    rec = NewInstance(instance_id="order-1", name="process_order", version="2",
                      input={"total": 10, "items": ["a"]}, tags={"team": "shop"},
                      start_at=start_at)
    start = start_event("process_order", rec.input)
    extra = h.event_raised("approval", True, now())
    assert store.create_instance(rec, [start, extra])
    got = store.get_instance("order-1")
    assert got is not None
    assert (got.name, got.version, got.status) == ("process_order", "2",
                                                    OrchestrationStatus.PENDING)
    assert got.input == {"total": 10, "items": ["a"]} and got.tags == {"team": "shop"}
    assert (got.output, got.failure, got.custom_status, got.completed_at) == (None,) * 4
    assert (got.execution_id, got.generation, got.history_len) == (rec.execution_id, 0, 0)
    assert got.created_at == rec.created_at and got.created_at.tzinfo is not None
    assert got.start_at == start_at and got.updated_at == rec.created_at
    with store.episode("order-1") as ep:
        assert ep is not None
        assert [r.dedup_key for r in ep.inbox] == ["start", "start:1"]
        assert [r.event for r in ep.inbox] == [start, extra]
        assert {r.execution_id for r in ep.inbox} == {rec.execution_id}
    assert store.get_instance("missing") is None


def test_create_instance_refuses_a_live_id_and_replaces_a_finished_one(store: Store) -> None:
    running(store, "dup")
    assert not store.create_instance(NewInstance("dup", "other"), [start_event("other")])
    assert store.get_instance("dup").name == "orch"  # type: ignore[union-attr]

    old = drain(store, "dup", COMPLETED, output="done", timers=[TimerRow(1, at(5))])
    store.append_inbox("dup", [InboxItem("late", h.event_raised("x", 1, now()))])
    replacement = NewInstance("dup", "other", input=2)
    assert store.create_instance(replacement, [start_event("other", 2)])
    got = store.get_instance("dup")
    assert got is not None
    assert (got.name, got.status, got.input, got.output) == ("other", "PENDING", 2, None)
    assert got.execution_id != old.execution_id and got.history_len == 0
    assert store.get_history("dup") == []
    assert rows(store, history, "dup") == 0 and rows(store, timers, "dup") == 0
    assert rows(store, inbox, "dup") == 1  # only the new start event


def test_create_instance_validates_lengths(store: Store) -> None:
    with pytest.raises(InvalidInstanceIdError):
        store.create_instance(NewInstance("x" * 257, "orch"), [start_event()])
    with pytest.raises(InvalidInstanceIdError):
        store.create_instance(NewInstance("", "orch"), [start_event()])
    with pytest.raises(ValueError):
        store.append_inbox("x", [InboxItem("k" * 301, start_event())])


def test_append_inbox_is_idempotent(store: Store) -> None:
    create(store, "inbox")
    first = InboxItem("client:1", h.event_raised("a", 1, now()))
    second = InboxItem("client:2", h.event_raised("b", 2, now()), "exec")
    assert store.append_inbox("inbox", [first, second]) == 2
    assert store.append_inbox("inbox", [first, second]) == 0
    assert store.append_inbox("inbox", [second, InboxItem("client:3", first.event)]) == 1
    assert store.append_inbox("inbox", []) == 0
    assert rows(store, inbox, "inbox") == 4  # with the start event
    with pytest.raises(OrchestrationNotFoundError):
        store.append_inbox("nobody", [first])


def test_query_instances_pages_by_created_at_then_id(store: Store) -> None:
    for i in range(7):
        create(store, f"q{i}", name="even" if i % 2 == 0 else "odd", created_at=at(i // 2))
    drain(store, "q0", COMPLETED)
    pages, after = [], None
    while True:
        page = store.query_instances(limit=3, after=after)
        if not page:
            break
        pages.append([r.instance_id for r in page])
        after = (page[-1].created_at, page[-1].instance_id)
    assert pages == [["q0", "q1", "q2"], ["q3", "q4", "q5"], ["q6"]]
    assert [r.instance_id for r in store.query_instances(name="odd")] == ["q1", "q3", "q5"]
    assert [r.instance_id for r in store.query_instances(statuses=["COMPLETED"])] == ["q0"]
    assert [r.instance_id for r in store.query_instances(
        statuses=[OrchestrationStatus.PENDING], created_from=at(1), created_to=at(2))] == \
        ["q2", "q3", "q4", "q5"]
    assert store.query_instances(name="even", after=(at(2), "q4")) == \
        store.query_instances(name="even", created_from=at(3))


def test_count_by_status_and_running_instances(store: Store) -> None:
    for i in range(3):
        running(store, f"r{i}")
    finished(store, "done")
    create(store, "pending")
    assert store.count_by_status() == {"RUNNING": 3, "COMPLETED": 1, "PENDING": 1}
    first = store.running_instances(limit=2)
    rest = store.running_instances(limit=10, after_id=first[-1].instance_id)
    assert [r.instance_id for r in first + rest] == ["pending", "r0", "r1", "r2"]


def test_instances_with_inbox(store: Store) -> None:
    running(store, "idle")
    running(store, "waiting")
    store.append_inbox("waiting", [InboxItem("e", h.event_raised("e", None, now()))])
    assert store.instances_with_inbox(now() + timedelta(seconds=1)) == ["waiting"]
    assert store.instances_with_inbox(now() - timedelta(minutes=1)) == []


def _finish_with_child(store: Store, parent: str, child: str, child_done: bool) -> None:
    with store.episode(parent) as ep:
        assert ep is not None
        n = ep.instance.history_len
        ep.commit(EpisodeCommit(
            status=RUNNING,
            children=[(NewInstance(child, "sub", parent_instance_id=parent, parent_task_id=n),
                       [start_event("sub")])]))
    drain(store, child, COMPLETED if child_done else RUNNING)


def test_purge_is_recursive_and_only_for_finished_instances(store: Store) -> None:
    running(store, "p")
    _finish_with_child(store, "p", "p:c1", True)
    _finish_with_child(store, "p", "p:c2", False)
    running(store, "other")
    with pytest.raises(OrchestrationStateError, match="RUNNING"):
        store.purge("p")
    with store.episode("p") as ep:  # timers, outbox and a late inbox row of the parent
        assert ep is not None
        ep.commit(EpisodeCommit(status=COMPLETED, completed_at=now(), outbox=[{"m": 1}],
                                timers=[TimerRow(7, at(1))]))
    store.append_inbox("p", [InboxItem("late", h.event_raised("x", 1, now()))])
    assert store.purge("p") == 2  # p and its finished child; the running child stays
    assert store.get_instance("p") is None and store.get_instance("p:c1") is None
    assert store.get_instance("p:c2") is not None and store.get_instance("other") is not None
    for table in (history, inbox, timers, outbox, instances):
        assert rows(store, table, "p") == 0
    with pytest.raises(OrchestrationNotFoundError):
        store.purge("p")


def test_purge_grandchildren_and_not_recursive(store: Store) -> None:
    running(store, "a")
    _finish_with_child(store, "a", "b", False)
    _finish_with_child(store, "b", "c", True)
    drain(store, "b", COMPLETED)
    drain(store, "a", COMPLETED)
    finished(store, "solo")
    assert store.purge("solo", recursive=False) == 1
    assert store.purge("a", recursive=False) == 1
    assert store.get_instance("b") is not None
    assert store.purge("b") == 2
    assert store.count_by_status() == {}


def _create_concurrently(store: Store, instance_id: str, threads: int) -> list[bool]:
    results: list[bool] = []
    start = threading.Barrier(threads)

    def creator(n: int) -> None:
        start.wait(10)
        results.append(store.create_instance(NewInstance(instance_id, f"o{n}"),
                                             [start_event(f"o{n}")]))

    workers = [threading.Thread(target=creator, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return results


def test_concurrent_creators_of_one_id_create_it_once(store: Store) -> None:
    finished(store, "reborn")
    for instance_id in ("race", "reborn"):
        assert sorted(_create_concurrently(store, instance_id, 6)) == [False] * 5 + [True]
        got = store.get_instance(instance_id)
        assert got is not None and got.status == "PENDING"
        with store.episode(instance_id) as ep:
            assert ep is not None and len(ep.inbox) == 1
            assert ep.inbox[0].event.name == got.name
