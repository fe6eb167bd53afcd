"""The schedules table and concurrency limits under concurrency, on SQLite, PostgreSQL and
MariaDB: sweepers racing for the same ticks start each once; admissions racing for the slots of
a limit never let more than N run, and start instances in creation order."""

from __future__ import annotations

import queue
import random
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete
from store_helpers import COMPLETED, RUNNING, at, create, drain

from celery_durable.engine import history as h
from celery_durable.store import Store
from celery_durable.store import limits as slots
from celery_durable.store.records import NewInstance
from celery_durable.store.schedules import ScheduleRecord, with_next_run
from celery_durable.store.schema import concurrency_slots, schedules

LIMIT = 3


@pytest.fixture
def clean(store: Store) -> Store:
    with store.engine.begin() as conn:
        conn.execute(delete(schedules))
        conn.execute(delete(concurrency_slots))
    return store


def _start(record: ScheduleRecord, instance_id: str, tick):  # type: ignore[no-untyped-def]
    event = h.execution_started(record.orchestrator, record.input, tick)
    return NewInstance(instance_id=instance_id, name=record.orchestrator, created_at=tick), [event]


def test_racing_sweepers_start_each_tick_once(clean: Store, store_url: str) -> None:
    record = with_next_run(ScheduleRecord(
        "race", "orch", interval=timedelta(seconds=1), overlap="allow",
        catchup_window=timedelta(hours=1), created_at=at(0), updated_at=at(0)), at(0))
    clean.schedules.create(record)
    sweepers = [Store(store_url) for _ in range(6)]
    fired: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(len(sweepers))

    def sweep(store: Store) -> None:
        go.wait()
        for second in range(20):  # every sweeper sweeps at each second, all at once
            for f in store.schedules.fire_due(at(second + random.random() * 0.5), _start):
                with lock:
                    fired.append(f.instance_id)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in sweepers:
        s.dispose()
    expected = [f"race@2030-01-01T00:00:{s:02d}Z" for s in range(20)]
    assert sorted(fired) == expected  # each tick once, none lost
    stored = clean.query_instances(name="orch", limit=100)
    assert sorted(r.instance_id for r in stored) == expected
    schedule = clean.schedules.get("race")
    assert schedule is not None and schedule.runs == 20 and schedule.missed == 0
    assert schedule.next_run_at == at(20)


def test_admissions_never_exceed_the_limit_and_keep_creation_order(clean: Store,
                                                                   store_url: str) -> None:
    ids = [f"lim-{i:02d}" for i in range(24)]
    for i, iid in enumerate(ids):
        create(clean, iid, name="limited", created_at=at(i))
    work: queue.Queue[str] = queue.Queue()
    for iid in ids:
        work.put(iid)
    done = threading.Event()
    violations: list[str] = []
    most = [0]

    def sample() -> None:  # what a dashboard would see, read from the store
        while not done.is_set():
            rows = {r.instance_id: r.status for r in clean.query_instances(
                name="limited", limit=100)}
            statuses = [rows[i] for i in ids]
            running = statuses.count(RUNNING)
            most[0] = max(most[0], running)
            started = [s is not h_pending() for s in statuses]
            if running > LIMIT or started != sorted(started, reverse=True):
                violations.append(str(statuses))
            time.sleep(0.002)

    def episode_worker(store: Store) -> None:
        while True:
            try:
                iid = work.get(timeout=0.5)
            except queue.Empty:
                return
            with store.episode(iid, wait=True) as ep:
                assert ep is not None
                admitted, _ = slots.admit(ep.connection, ep.dialect, "limited", iid, LIMIT,
                                          at(1000))
                if admitted:
                    time.sleep(0.005)  # widen the window a racing admission would need
                    first = ep.instance.history_len
                    events = [row.event.with_seq(first + i) for i, row in enumerate(ep.inbox)]
                    from celery_durable.store import EpisodeCommit
                    ep.commit(EpisodeCommit(status=RUNNING, new_events=events,
                                            consumed_inbox_ids=[r.id for r in ep.inbox]))
            if not admitted:
                work.put(iid)  # (a real refusal waits for a wake-up; here: try again later)
                time.sleep(0.002)
                continue
            time.sleep(0.05 + random.random() * 0.05)  # run a while, then end: frees the slot
            drain(store, iid, COMPLETED, output="done")

    stores = [Store(store_url) for _ in range(5)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=episode_worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    sampler.join()
    for s in stores:
        s.dispose()
    assert violations == []
    assert most[0] == LIMIT
    assert all(clean.get_instance(i).status is COMPLETED for i in ids)


def h_pending():  # type: ignore[no-untyped-def]
    from celery_durable.engine.status import OrchestrationStatus

    return OrchestrationStatus.PENDING
