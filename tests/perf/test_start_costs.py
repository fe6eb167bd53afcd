"""Round trips and statements of a start and of an orchestration's episodes on PostgreSQL,
counted (never timed): round trips on the wire (`round_trips.RoundTripProxy` counts the
server's ReadyForQuery messages, BEGIN and COMMIT included), statements through the store's
counter, with the real runtime in this process (`perf_driver.InProcessWorker`).

- a start (``schedule_new_orchestration``): one statement, one round trip (autocommit);
- the first episode (the woken one): BEGIN, the lock, the wake-up claim's release and the inbox
  read in one round trip, its write and COMMIT in another (store/pipelines.py);
- a later step (an activity's completion and the episode it runs inline): two statements in
  two round trips, the last step included (its timers are deleted in the commit's statement).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from perf_driver import InProcessWorker, is_activity, make_durable, sequence
from round_trips import RoundTripProxy
from services import database

from celery_durable import Durable, OrchestrationStatus
from celery_durable.store.outbox_acks import OutboxAcks

STEPS = 3
FIRST_EPISODE_ROUND_TRIPS = 2
STEP_ROUND_TRIPS = 2


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Durable, RoundTripProxy]]:
    with database("postgresql", "durable_starts") as url:
        proxy = RoundTripProxy(url)
        durable = make_durable(proxy.url, tmp_path)
        # published rows are deleted by the next commit only: no timer thread sends anything
        # while a round trip is counted
        durable.store.outbox_acks = OutboxAcks(durable.store.delete_outbox, delay=3600)
        try:
            yield durable, proxy
        finally:
            durable.store.dispose()
            proxy.close()


def test_the_proxy_counts_round_trips(proxied: tuple[Durable, RoundTripProxy]) -> None:
    durable, proxy = proxied
    with durable.store.engine.connect() as conn:
        with proxy.counting() as one:
            conn.execute(sa.text("SELECT 1")).all()  # BEGIN (psycopg's own), then SELECT
        with proxy.counting() as two:
            conn.commit()
    assert (one.count, two.count) == (2, 1)


def test_a_start_and_each_episode_cost_few_round_trips(
        proxied: tuple[Durable, RoundTripProxy]) -> None:
    durable, proxy = proxied
    store = durable.store
    with InProcessWorker(durable).running() as worker:
        durable.client.schedule_new_orchestration(sequence, input=STEPS)
        worker.drain()  # warm: pooled connections, compiled statements
        with store.statement_count() as statements, proxy.counting() as trips:
            iid = durable.client.schedule_new_orchestration(sequence, input=STEPS)
        start = (statements.count, trips.count)
        with store.statement_count() as statements, proxy.counting() as trips:
            assert not is_activity(worker.step())  # the first episode, woken
        first = (statements.count, trips.count)
        steps = []
        while worker.queue:
            with store.statement_count() as statements, proxy.counting() as trips:
                assert is_activity(worker.step())
            steps.append((statements.count, trips.count))
    record = store.get_instance(iid)
    assert record is not None and record.status is OrchestrationStatus.COMPLETED
    print(f"(statements, round trips): start {start}, first episode {first}, steps {steps}")
    assert start == (1, 1)
    # lock and release of the wake-up claim (one statement), inbox read, write
    assert first == (3, FIRST_EPISODE_ROUND_TRIPS)
    assert steps == [(2, STEP_ROUND_TRIPS)] * STEPS
