"""Episodes: lock, inbox, atomic commit, continue-as-new, children, and their costs."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from sqlalchemy import select
from store_helpers import (
    COMPLETED,
    RUNNING,
    at,
    create,
    drain,
    finished,
    now,
    running,
    start_event,
    wait_for_lock_wait,
)

from celery_durable.engine import history as h
from celery_durable.engine.failure import FailureDetails
from celery_durable.errors import OrchestrationNotFoundError, OrchestrationStateError
from celery_durable.store import (
    Episode,
    EpisodeCommit,
    InboxItem,
    NewInstance,
    Store,
    TimerRow,
)
from celery_durable.store.schema import timers

FORK = multiprocessing.get_context("fork")


def completion(task_id: int, execution_id: str | None = None) -> InboxItem:
    return InboxItem(f"task:{task_id}", h.task_completed(task_id, {"r": task_id}, now()),
                     execution_id)


def scheduled(seq: int, task_id: int) -> h.HistoryEvent:
    return h.HistoryEvent(seq, h.TASK_SCHEDULED, now(), task_id, "act", {"input": None})


def timer_rows(store: Store, instance_id: str) -> list[tuple[str, int]]:
    with store.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(
            select(timers.c.execution_id, timers.c.task_id)
            .where(timers.c.instance_id == instance_id).order_by(timers.c.task_id))]


def test_first_episode_moves_the_start_into_history(store: Store) -> None:
    rec = create(store, "first", input=[1, 2])
    with store.episode("first") as ep:
        assert isinstance(ep, Episode)
        assert ep.instance.status == "PENDING" and ep.load_history() == []
        (row,) = ep.inbox
        assert row.id is not None and row.event.kind == h.EXECUTION_STARTED
        ep.commit(EpisodeCommit(status=RUNNING, new_events=[row.event.with_seq(0)],
                                consumed_inbox_ids=[row.id], custom_status={"step": 1}))
        assert ep.instance.history_len == 1 and ep.instance.status == RUNNING
    got = store.get_instance("first")
    assert got is not None
    assert (got.status, got.history_len, got.custom_status) == (RUNNING, 1, {"step": 1})
    assert got.updated_at > rec.created_at
    assert [e.kind for e in store.get_history("first")] == [h.EXECUTION_STARTED]
    with store.episode("first") as ep:
        assert ep is not None and ep.inbox == []
        assert ep.load_history() == store.get_history("first")


def test_episode_of_an_unknown_instance_raises(store: Store) -> None:
    with pytest.raises(OrchestrationNotFoundError), store.episode("nobody"):
        pass
    with pytest.raises(OrchestrationNotFoundError):
        store.get_history("nobody")


def test_commit_writes_everything_or_nothing(store: Store) -> None:
    inst = running(store, "atomic")
    running(store, "parent")
    with pytest.raises(RuntimeError), store.episode("atomic") as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(
            status=COMPLETED, new_events=[scheduled(1, 1)], output="out",
            completed_at=now(), timers=[TimerRow(1, at(1))], outbox=[{"m": 1}],
            children=[(NewInstance("atomic:child", "sub"), [start_event("sub")])],
            notify=[("parent", completion(9))]))
        raise RuntimeError("the worker crashed before the commit")
    assert store.get_instance("atomic") == inst
    assert len(store.get_history("atomic")) == 1
    assert timer_rows(store, "atomic") == []
    assert store.pending_outbox(at(10**9), 10) == []
    assert store.get_instance("atomic:child") is None
    with store.episode("parent") as ep:
        assert ep is not None and ep.inbox == []


def test_commit_writes_status_output_failure_timers_outbox(store: Store) -> None:
    inst = running(store, "all")
    failure = FailureDetails("boom", "ValueError", "trace")
    with store.episode("all") as ep:
        assert ep is not None
        ids = ep.commit(EpisodeCommit(
            status="FAILED", new_events=[scheduled(1, 1), scheduled(2, 2)], failure=failure,
            output=None, completed_at=at(3), timers=[TimerRow(1, at(1)), TimerRow(2, at(2))],
            outbox=[{"m": 1}, {"m": 2}, {"m": 3}]))
    assert len(ids) == 3 and ids == sorted(ids)
    got = store.get_instance("all")
    assert got is not None
    assert (got.status, got.failure, got.completed_at, got.history_len) == \
        ("FAILED", failure.to_json(), at(3), 3)
    assert timer_rows(store, "all") == [(inst.execution_id, 1), (inst.execution_id, 2)]
    pending = store.pending_outbox(at(10**9), 10)
    assert pending == [(i, "all", {"m": n}) for i, n in zip(ids, (1, 2, 3), strict=True)]
    store.delete_outbox(ids[:2])
    assert store.pending_outbox(at(10**9), 10) == pending[2:]
    with store.episode("all") as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status="FAILED", failure=failure.to_json(), delete_timers=True))
    assert timer_rows(store, "all") == []


def test_history_must_continue_contiguously(store: Store) -> None:
    running(store, "seq")
    with pytest.raises(ValueError, match="expected 1"), store.episode("seq") as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status=RUNNING, new_events=[scheduled(5, 1)]))
    assert len(store.get_history("seq")) == 1


def test_extra_items_are_consumed_or_kept(store: Store) -> None:
    inst = running(store, "extra")
    eid = inst.execution_id
    first = completion(1, eid)
    with store.episode("extra", [first]) as ep:  # consumed directly: never inserted
        assert ep is not None and [(r.id, r.dedup_key) for r in ep.inbox] == [(None, "task:1")]
        ep.commit(EpisodeCommit(status=RUNNING, new_events=[first.event.with_seq(1)]))
    second = completion(2, eid)
    with store.episode("extra", [second]) as ep:  # no commit: the extra item is kept
        assert ep is not None
    with pytest.raises(KeyError), store.episode("extra", [completion(3, eid)]):
        raise KeyError("crash")  # an exception: kept too, in a transaction of its own
    with store.episode("extra", [second]) as ep:  # a stored duplicate is not listed twice
        assert ep is not None
        assert [(r.dedup_key, r.id is not None) for r in ep.inbox] == \
            [("task:2", True), ("task:3", True)]
        assert ep.inbox[0].event == second.event and ep.inbox[0].execution_id == eid
    assert [e.kind for e in store.get_history("extra")] == [h.EXECUTION_STARTED,
                                                             h.TASK_COMPLETED]


def test_continue_as_new_resets_history(store: Store) -> None:
    inst = running(store, "can", input=1)
    drain(store, "can", timers=[TimerRow(1, at(1))])
    with store.episode("can") as ep:
        assert ep is not None
        restart = h.execution_started("orch", 2, now(), version="3", generation=1)
        ep.commit(EpisodeCommit(status=RUNNING, new_execution=("e" * 32, 1),
                                notify=[("can", InboxItem("start:e", restart, "e" * 32))]))
        assert ep.instance.execution_id == "e" * 32 and ep.instance.history_len == 0
    got = store.get_instance("can")
    assert got is not None
    assert (got.execution_id, got.generation, got.history_len, got.input) == \
        ("e" * 32, 1, 0, 1)
    assert store.get_history("can") == [] and timer_rows(store, "can") == []
    got = drain(store, "can", timers=[TimerRow(1, at(2))])
    assert (got.history_len, got.input, got.version) == (1, 2, "3")
    assert store.get_history("can")[0].data["input"] == 2
    assert timer_rows(store, "can") == [("e" * 32, 1)] and got.execution_id != inst.execution_id


def test_children_and_notify(store: Store) -> None:
    running(store, "parent")
    running(store, "busy")
    finished(store, "reused")
    notify = ("busy", completion(4))
    children = [(NewInstance(iid, "sub", input=iid, parent_instance_id="parent",
                             parent_task_id=n), [start_event("sub", iid)])
                for n, iid in enumerate(["fresh", "busy", "reused", "fresh"])]
    with store.episode("parent") as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status=RUNNING, children=children, notify=[notify, notify]))
        assert ep.refused_children == ["busy", "fresh"]
    for iid, task_id in (("fresh", 0), ("reused", 2)):
        child = store.get_instance(iid)
        assert child is not None
        assert (child.status, child.input, child.parent_instance_id, child.parent_task_id) == \
            ("PENDING", iid, "parent", task_id)
        with store.episode(iid) as ep:
            assert ep is not None and [r.dedup_key for r in ep.inbox] == ["start"]
    assert store.get_instance("busy").parent_instance_id is None  # type: ignore[union-attr]
    with store.episode("parent") as ep:  # the same notification again is a no-op
        assert ep is not None
        ep.commit(EpisodeCommit(status=RUNNING, notify=[notify]))
    with store.episode("busy") as ep:
        assert ep is not None and [r.dedup_key for r in ep.inbox] == ["task:4"]


def test_a_locked_instance_yields_none_and_keeps_the_extra(store: Store, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite serialises episodes: the second waits for the first")
    inst = running(store, "locked")
    item = completion(1, inst.execution_id)
    with store.episode("locked") as holder:
        assert holder is not None
        for _ in range(2):
            with store.episode("locked", [item]) as other:
                assert other is None
        assert [r.dedup_key for r in holder.recheck_inbox()] == ["task:1"]
        assert holder.recheck_inbox() == []
        assert [r.dedup_key for r in holder.inbox] == ["task:1"]
        got: list[tuple[int, list[str]] | None] = []
        waiter = threading.Thread(target=_wait_for_episode, args=(store, "locked", got))
        waiter.start()
        wait_for_lock_wait(store)  # wait=True blocks on the holder
        assert got == []
        holder.commit(EpisodeCommit(status=RUNNING, new_events=[item.event.with_seq(1)],
                                    consumed_inbox_ids=[r.id for r in holder.inbox if r.id]))
    waiter.join(10)
    # the waiter sees the holder's commit: its history, and not the inbox row it consumed
    assert got == [(2, [])]
    assert store.get_instance("locked").history_len == 2  # type: ignore[union-attr]


def _wait_for_episode(store: Store, instance_id: str,
                      got: list[tuple[int, list[str]] | None]) -> None:
    with store.episode(instance_id, wait=True) as ep:
        got.append(None if ep is None
                   else (ep.instance.history_len, [r.dedup_key for r in ep.inbox]))


def _episodes(url: str, instance_id: str, count: int,
              barrier: multiprocessing.synchronize.Barrier) -> None:
    store = Store(url)
    barrier.wait(10)
    for _ in range(count):
        with store.episode(instance_id, wait=True) as ep:
            assert ep is not None
            seq = ep.instance.history_len
            ep.commit(EpisodeCommit(status=RUNNING, new_events=[scheduled(seq, seq)],
                                    outbox=[{"seq": seq}]))
    store.dispose()


def test_concurrent_processes_serialise_episodes(store: Store) -> None:
    """Three processes write episodes of one instance at once; none fails ("database is
    locked" on SQLite), none overwrites another's history."""
    running(store, "contended")
    barrier = FORK.Barrier(3)
    procs = [FORK.Process(target=_episodes, args=(store.url, "contended", 25, barrier))
             for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    events = store.get_history("contended")
    assert [e.seq for e in events] == list(range(76))
    assert store.get_instance("contended").history_len == 76  # type: ignore[union-attr]
    assert len(store.pending_outbox(at(10**9), 100)) == 75


def test_statement_counts(store: Store, backend: str) -> None:
    begin = 1 if backend == "sqlite" else 0  # SQLite's BEGIN IMMEDIATE is a statement
    inst = running(store, "warm")
    eid, counts = inst.execution_id, {}
    extra = [completion(1, eid)]
    # warm: the runtime's cache has the state; the completion is passed in, not stored first
    with store.statement_count() as count, store.episode("warm", extra) as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status=RUNNING,
                                new_events=[ep.inbox[0].event.with_seq(1), scheduled(2, 2)],
                                outbox=[{"activity": 2}]))
    counts["warm"] = count.count
    # the lock (on PostgreSQL and SQLite it tells whether the inbox has rows: none here, so it
    # is not read; MySQL reads it), then PostgreSQL: one statement for the history, outbox and
    # instance writes; others: history, outbox, update
    warm = {"postgresql": 2, "sqlite": 4, "mysql": 5}[backend]
    assert count.count == begin + warm, count.statements
    with store.statement_count() as count:  # cold: history loaded, an inbox row consumed
        store.append_inbox("warm", [completion(2, eid)])
    counts["append_inbox"] = count.count
    with store.statement_count() as count, store.episode("warm") as ep:
        assert ep is not None
        assert len(ep.load_history()) == 3
        ep.commit(EpisodeCommit(status=RUNNING, new_events=[ep.inbox[0].event.with_seq(3)],
                                consumed_inbox_ids=[ep.inbox[0].id or 0],
                                outbox=[{"a": 1}, {"a": 2}]))
    counts["cold"] = count.count
    cold = {"postgresql": 4, "sqlite": 8, "mysql": 8}[backend]  # warm's, + history loaded,
    assert count.count <= begin + cold, count.statements       # (+ an inbox row consumed)
    with store.statement_count() as count:
        create(store, "new")
    counts["create_instance"] = count.count
    # PostgreSQL: instance and start event in one statement (autocommit); others: the check
    # for an instance holding the id, the instance, the start event
    assert count.count == (1 if backend == "postgresql" else begin + 3), count.statements
    with store.statement_count() as count, store.episode("warm") as ep:
        assert ep is not None
    counts["empty"] = count.count
    assert count.count == begin + (2 if backend == "mysql" else 1)
    print(backend, counts)


def test_writes_inside_an_episode_fail_fast_on_sqlite(store: Store, backend: str) -> None:
    running(store, "outer")
    running(store, "other")
    item = InboxItem("x", h.event_raised("x", 1, now()))
    with store.episode("outer") as ep:
        assert ep is not None
        assert store.get_instance("other") is not None  # reads never wait
        if backend == "sqlite":
            with pytest.raises(OrchestrationStateError, match="inside an episode"):
                store.append_inbox("other", [item])
        else:
            assert store.append_inbox("other", [item]) == 1
    assert store.append_inbox("other", [item]) == (1 if backend == "sqlite" else 0)


def test_a_fan_out_commit_costs_a_constant_number_of_statements(store: Store) -> None:
    running(store, "fan")
    n = 120
    children = [(NewInstance(f"fan:{i}", "sub", parent_instance_id="fan", parent_task_id=i),
                 [start_event("sub")]) for i in range(n)]
    with store.statement_count() as count, store.episode("fan") as ep:
        assert ep is not None
        ids = ep.commit(EpisodeCommit(
            status=RUNNING, new_events=[scheduled(1 + i, i) for i in range(n)],
            timers=[TimerRow(i, at(i)) for i in range(n)], children=children,
            outbox=[{"n": i} for i in range(n)],
            notify=[(f"fan:{i}", completion(1)) for i in range(n)]))
    # lock, inbox, history, timers, outbox, children (select, insert, start rows), notify, update
    assert count.count <= 11, count.statements
    assert len(ids) == n and ids == sorted(ids)
    assert [m["n"] for _, _, m in store.pending_outbox(at(10**9), 1000)] == list(range(n))
    assert store.count_by_status() == {"RUNNING": 1, "PENDING": n}
