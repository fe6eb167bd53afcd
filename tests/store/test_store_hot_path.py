"""The hot path's mechanisms: deferred outbox deletes, PostgreSQL's one-statement commit, and
pinging only connections that sat idle."""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.exc import DisconnectionError
from store_helpers import (
    RUNNING,
    at,
    create,
    finished,
    now,
    running,
    start_event,
    wait_for_lock_wait,
    woken_episode,
)

from celery_durable.engine import history as h
from celery_durable.errors import OrchestrationNotFoundError
from celery_durable.store import EpisodeCommit, InboxItem, NewInstance, Store, WakeupClaim
from celery_durable.store import engine as engine_module
from celery_durable.store.engine import PING_AFTER, _ping_if_idle, is_deadlock
from celery_durable.store.episode import ONE_STATEMENT_ROWS
from celery_durable.store.outbox_acks import OutboxAcks
from celery_durable.store.schema import outbox
from celery_durable.store.writes import deliver_rows, inbox_rows


def outbox_ids(store: Store) -> list[int]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(outbox.c.id)).scalars())


def step(store: Store, instance_id: str, messages: int = 1) -> list[int]:
    """One episode appending a TaskScheduled and ``messages`` outbox rows; the new outbox ids."""
    with store.episode(instance_id) as ep:
        assert ep is not None
        seq = ep.instance.history_len
        event = h.HistoryEvent(seq, h.TASK_SCHEDULED, now(), seq, "act", None)
        return ep.commit(EpisodeCommit(status=RUNNING, new_events=[event],
                                       outbox=[{"n": i} for i in range(messages)]))


def test_acknowledged_rows_are_deleted_by_the_next_commit(store: Store) -> None:
    running(store, "a")
    running(store, "b")
    first = step(store, "a", messages=2)
    store.acknowledge_outbox(first)
    assert store.outbox_acks.pending() == 2
    with store.statement_count() as count:
        second = step(store, "b")  # another instance's episode deletes them
    assert outbox_ids(store) == second and store.outbox_acks.pending() == 0
    if store.dialect == "postgresql":  # inside the commit's single statement (after the lock,
        # which found the inbox empty)
        assert len(count.statements) == 2 and "acked AS (DELETE" in count.statements[-1]


def test_acknowledged_rows_survive_an_episode_that_does_not_commit(store: Store) -> None:
    running(store, "a")
    ids = step(store, "a")
    store.acknowledge_outbox(ids)
    with store.episode("a") as ep:  # read-only: nothing committed
        assert ep is not None
    with pytest.raises(RuntimeError), store.episode("a") as ep:
        raise RuntimeError("the episode failed")
    assert store.outbox_acks.pending() == 1 and outbox_ids(store) == ids
    store.outbox_acks.flush()
    assert outbox_ids(store) == [] and store.outbox_acks.pending() == 0


def test_a_quiet_process_deletes_acknowledged_rows_on_its_own(store: Store) -> None:
    running(store, "a")
    ids = step(store, "a")
    store.acknowledge_outbox(ids)
    deadline = time.monotonic() + 10
    while outbox_ids(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox_ids(store) == []


def test_outbox_acks_belong_to_the_process_that_made_them() -> None:
    deleted: list[list[int]] = []
    acks = OutboxAcks(deleted.append, delay=60)
    acks.add([1, 2])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child has none of its parent's ids to delete
        os.write(write, str(acks.pending()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"0"
    assert acks.take() == [1, 2]
    acks.restore([2])
    acks.flush()
    assert deleted == [[2]]


def test_a_failed_deferred_delete_leaves_the_rows_to_the_sweeper() -> None:
    def fail(ids: list[int]) -> None:
        raise ConnectionError("database down")

    acks = OutboxAcks(fail, delay=60)
    acks.add([5])
    acks.flush()  # logged, not raised
    assert acks.pending() == 0


@pytest.mark.parametrize("events", [1, ONE_STATEMENT_ROWS, ONE_STATEMENT_ROWS + 1])
def test_commits_of_every_size_write_everything(store: Store, events: int) -> None:
    running(store, "wide")
    for i in range(3):
        store.append_inbox("wide", [InboxItem(f"e{i}", h.event_raised("e", i, now()))])
    old = step(store, "wide")
    store.acknowledge_outbox(old)
    with store.episode("wide") as ep:
        assert ep is not None and len(ep.inbox) == 3
        seq = ep.instance.history_len
        new = [h.HistoryEvent(seq + i, h.TASK_SCHEDULED, now(), seq + i, "act", {"i": i})
               for i in range(events)]
        ids = ep.commit(EpisodeCommit(
            status=RUNNING, new_events=new, custom_status={"events": events},
            consumed_inbox_ids=[r.id or 0 for r in ep.inbox],
            outbox=[{"i": i} for i in range(events)]))
    assert len(ids) == events and outbox_ids(store) == sorted(ids)
    assert [m["i"] for _, _, m in store.pending_outbox(at(10**9), events + 5)] == \
        list(range(events))
    got = store.get_instance("wide")
    assert got is not None and got.history_len == seq + events
    assert got.custom_status == {"events": events}
    assert [e.data for e in store.get_history("wide")[seq:]] == [{"i": i} for i in range(events)]
    with store.episode("wide") as ep:
        assert ep is not None and ep.inbox == []


def test_a_connection_killed_while_idle_is_replaced(store: Store) -> None:
    if store.dialect == "sqlite":
        pytest.skip("SQLite has no server connection to lose")
    running(store, "a")
    with store.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()" if store.dialect == "postgresql"
                                else "SELECT CONNECTION_ID()")).scalar_one()
    killer = Store(store.url)
    with killer.engine.begin() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend({pid})" if store.dialect == "postgresql"
                          else f"KILL {pid}"))
    killer.dispose()
    time.sleep(PING_AFTER + 0.2)
    assert step(store, "a")  # the pooled connection was dead: pinged, replaced, no error


class _Cursor:
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def execute(self, statement: str) -> None:
        if self.conn.dead:
            raise ConnectionError("server closed the connection unexpectedly")
        self.conn.executed.append(statement)

    def close(self) -> None:
        pass


class _Connection:
    """Records what a checkout sends; ``dead`` makes it fail as a closed connection does."""

    def __init__(self, dead: bool = False) -> None:
        self.dead = dead
        self.executed: list[str] = []

    def cursor(self) -> _Cursor:
        return _Cursor(self)

    def rollback(self) -> None:
        self.executed.append("ROLLBACK")


class _Record:
    def __init__(self, idle: float | None) -> None:
        self.info = {} if idle is None else {"checked_in_at": time.monotonic() - idle}


def test_a_one_statement_write_on_a_connection_that_sat_idle(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ping of a connection that sat idle leaves no transaction open behind it, so that
    a delivery (one statement in autocommit on PostgreSQL) can still use the connection."""
    running(store, "a")
    monkeypatch.setattr(engine_module, "PING_AFTER", 0.0)  # every pooled connection sat idle
    assert store.deliver("a", [event(1)]) is True
    assert store.inbox_size("a") == 1


def test_only_connections_idle_for_a_while_are_pinged() -> None:
    fresh, busy, idle = _Connection(), _Connection(), _Connection()
    _ping_if_idle(fresh, _Record(None), None)  # just connected
    _ping_if_idle(busy, _Record(PING_AFTER / 10), None)
    _ping_if_idle(idle, _Record(PING_AFTER + 1), None)
    # the ping's transaction is ended: the connection may be switched to autocommit
    assert (fresh.executed, busy.executed, idle.executed) == ([], [], ["SELECT 1", "ROLLBACK"])
    with pytest.raises(DisconnectionError, match="stale pooled connection"):
        _ping_if_idle(_Connection(dead=True), _Record(PING_AFTER + 1), None)


# -- coalesced wake-ups ------------------------------------------------------------------------

def event(n: int) -> InboxItem:
    return InboxItem(f"e{n}", h.event_raised("e", n, now()))


def test_one_wake_up_is_claimed_until_a_woken_episode_starts(store: Store) -> None:
    running(store, "a")
    assert store.deliver("a", [event(1)]) is True  # the caller sends the wake-up
    assert store.deliver("a", [event(2)]) is False  # already on its way
    assert store.request_wakeup("a") is False
    with store.episode("a") as ep:  # an inline episode leaves the claim alone
        assert ep is not None
    assert store.request_wakeup("a") is False
    with store.episode("a", wait=True) as ep:  # the woken one releases it, then reads the inbox
        assert ep is not None and [r.dedup_key for r in ep.inbox] == ["e1", "e2"]
    assert store.request_wakeup("a") is True
    assert store.inbox_size("a") == 2  # nothing was committed: the events wait


def test_deliver_to_an_unknown_instance_writes_nothing(store: Store) -> None:
    with pytest.raises(OrchestrationNotFoundError):
        store.deliver("nobody", [event(1)])
    assert store.inbox_size("nobody") == 0
    assert store.request_wakeup("nobody") is True  # (a claim for no instance is harmless)


def test_purge_drops_the_wake_up_claim(store: Store) -> None:
    finished(store, "done")
    assert store.request_wakeup("done") is True
    assert store.purge("done") == 1
    assert store.request_wakeup("done") is True


def test_a_claim_made_while_a_woken_episode_runs_waits_for_its_commit(store: Store) -> None:
    """A deliverer that finds the claim released by an episode still running must not see it
    as free before that episode commits, or its event could miss both that episode (which read
    the inbox already) and a wake-up of its own."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time")
    running(store, "a")
    assert store.request_wakeup("a") is True
    claimed: list[bool] = []
    with store.episode("a", wait=True) as ep:
        assert ep is not None
        claimer = threading.Thread(target=lambda: claimed.append(store.request_wakeup("a")))
        claimer.start()
        wait_for_lock_wait(store)  # blocked on the released, uncommitted claim
        assert claimed == []
        ep.commit(EpisodeCommit(status=RUNNING))
    claimer.join(10)
    assert claimed == [True]


def test_a_delivery_that_finds_the_claim_on_its_way_holds_back_the_woken_episode(
        store: Store) -> None:
    """A deliverer that finds the wake-up already claimed sends none, so the episode that
    releases the claim must see its inbox row: the release waits until the delivery commits
    (otherwise a row committed just after the episode read the inbox would be stranded)."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time")
    running(store, "a")
    assert store.request_wakeup("a") is True  # a wake-up is on its way
    seen: list[list[str]] = []
    with store.engine.connect() as conn:
        tx = conn.begin()
        assert deliver_rows(conn, store.dialect, "a",
                            inbox_rows([("a", event(1))], now())) is False
        episode = woken_episode(store, "a", seen)
        wait_for_lock_wait(store)  # the episode waits for the delivery's commit
        assert seen == []
        tx.commit()
    episode.join(10)
    assert seen == [["e1"]]
    assert store.request_wakeup("a") is True  # released: the next delivery sends one


def test_a_delivery_without_items_only_claims_the_wake_up(store: Store) -> None:
    """(A start whose episode found the instance locked elsewhere delivers nothing new.)"""
    running(store, "a")
    with store.engine.begin() as conn:
        assert deliver_rows(conn, store.dialect, "a", []) is True
        assert deliver_rows(conn, store.dialect, "a", []) is False
        assert deliver_rows(conn, store.dialect, "nobody", []) is None
    assert store.inbox_size("a") == 0
    assert store.request_wakeup("a") is False


def test_deliver_is_one_statement_on_postgresql(store: Store) -> None:
    running(store, "a")
    with store.statement_count() as count:
        assert store.deliver("a", [event(1), event(2)]) is True
        assert store.deliver("a", [event(2), event(3)]) is False
    expected = 2 if store.dialect == "postgresql" else None
    if expected is not None:
        assert len(count.statements) == expected, count.statements
    assert store.inbox_size("a") == 3


def test_a_fresh_start_is_one_statement_on_postgresql(store: Store) -> None:
    """Creating an instance whose id is free: one statement (instance row and start event);
    an id held by a live instance is still refused, one of a finished instance replaced."""
    assert store.get_instance("fresh") is None  # (and the store's schema check is done)
    with store.statement_count() as count:
        rec = create(store, "fresh", input={"n": 1}, tags={"team": "a"})
    if store.dialect == "postgresql":
        assert len(count.statements) == 1, count.statements
    record = store.get_instance("fresh")
    assert record is not None and (record.input, record.tags) == ({"n": 1}, {"team": "a"})
    assert record.execution_id == rec.execution_id
    with store.episode("fresh", wait=True) as ep:
        assert ep is not None
        assert [(r.dedup_key, r.execution_id, r.event.kind) for r in ep.inbox] == \
            [("start", rec.execution_id, h.EXECUTION_STARTED)]
    again = NewInstance(instance_id="fresh", name="orch")
    assert store.create_instance(again, [start_event()]) is False  # live: refused
    finished(store, "done")
    replaced = NewInstance(instance_id="done", name="orch", input=2)
    assert store.create_instance(replaced, [start_event("orch", 2)]) is True
    record = store.get_instance("done")
    assert record is not None and record.input == 2 and record.status.value == "PENDING"
    assert record.execution_id == replaced.execution_id


def test_a_busy_instance_gets_the_item_and_the_wake_up_claim_in_one_transaction(
        store: Store) -> None:
    """A completion that meets an instance locked elsewhere writes its item to the inbox and
    claims the wake-up in the transaction that found the lock taken: one commit, not two."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite waits for the lock instead of finding it taken")
    running(store, "a")
    outcomes: list[tuple[bool, int, bool]] = []
    commits: list[int] = []
    sa_event.listen(store.engine, "commit", lambda conn: commits.append(threading.get_ident()))

    def deliver(n: int) -> None:
        claim = WakeupClaim()
        before = commits.count(threading.get_ident())
        with store.episode("a", [event(n)], claim=claim) as ep:
            assert ep is None
        mine = commits.count(threading.get_ident()) - before
        outcomes.append((claim.claimed, mine, store.inbox_size("a") == n))

    with store.episode("a", wait=True) as holder:  # a woken episode holds the instance
        assert holder is not None
        for n in (1, 2):
            other = threading.Thread(target=deliver, args=(n,))
            other.start()
            other.join(10)
    # the first claims (its caller sends the wake-up), the second finds it on its way; each
    # wrote its item, and one commit each
    assert outcomes == [(True, 1, True), (False, 1, True)]
    assert store.request_wakeup("a") is False
    with store.episode("a", wait=True) as ep:
        assert ep is not None and [r.dedup_key for r in ep.inbox] == ["e1", "e2"]


def test_deadlock_victims_are_recognised_on_every_database() -> None:
    import psycopg.errors
    import pymysql.err
    from sqlalchemy.exc import OperationalError

    def wrapped(orig: Exception) -> OperationalError:
        return OperationalError("INSERT ...", {}, orig)

    assert is_deadlock(wrapped(psycopg.errors.DeadlockDetected("deadlock detected")))
    assert is_deadlock(wrapped(psycopg.errors.SerializationFailure("could not serialize")))
    assert is_deadlock(wrapped(pymysql.err.OperationalError(1213, "Deadlock found")))
    assert not is_deadlock(wrapped(psycopg.errors.UniqueViolation("duplicate key")))
    assert not is_deadlock(wrapped(pymysql.err.OperationalError(2003, "Can't connect")))
    assert not is_deadlock(RuntimeError("not a database error"))
