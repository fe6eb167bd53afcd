"""``schedule_new_orchestration(..., session=...)``: the instance joins the caller's SQLAlchemy
transaction. It exists if and only if that transaction commits, nothing is sent before the
commit, and after it the instance runs on a real worker (Redis broker, a store on PostgreSQL,
MariaDB or SQLite shared by the test's own table)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker
from services import REDIS_URL, database, require
from sqlalchemy.orm import Session
from workers import celery_app, delete_queue

from celery_durable import Durable, OrchestrationStatus, TransactionMismatchError
from celery_durable.runtime import messages

pytestmark = pytest.mark.e2e
STORES = ["postgresql", "sqlite", "mariadb"]
BROKER = f"{REDIS_URL}/13"
orders = sa.Table("shop_orders", sa.MetaData(), sa.Column("id", sa.String(64), primary_key=True))


@dataclass
class Shop:
    durable: Durable
    engine: sa.Engine  # the user's own engine, on the store's database
    orchestrator: Any
    sent: list[str]  # instance ids of the wake-ups sent since the test began

    def state(self, instance_id: str) -> Any:
        return self.durable.client.get_orchestration_state(instance_id)

    def completes(self, instance_id: str) -> Any:
        state = self.durable.client.wait_for_orchestration_completion(instance_id, timeout=30)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        return state.output


@pytest.fixture(scope="module", params=STORES)
def shop_backend(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Durable, Any]]:
    require("redis")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('tx') / 'shop.sqlite3'}"
        else:
            url = stack.enter_context(database(request.param, "durable_tx"))
        queue = f"durable-tx-{uuid.uuid4().hex[:8]}"
        stack.callback(delete_queue, BROKER, queue)
        app = celery_app("tx", BROKER, queue)
        durable = Durable(app, store_url=url)
        stack.callback(durable.store.dispose)

        @durable.activity(name="tx.ship")
        def ship(ctx: Any, order: str) -> str:
            return f"shipped {order}"

        @durable.orchestrator(name="tx.fulfil")
        def fulfil(ctx: Any, order: str) -> Any:
            return (yield ctx.call_activity(ship, input=order))

        durable.store.create_schema()
        stack.enter_context(start_worker(app, pool="threads", concurrency=2,
                                         perform_ping_check=False, loglevel="WARNING",
                                         shutdown_timeout=30))
        yield durable, fulfil


@pytest.fixture
def shop(shop_backend: tuple[Durable, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    durable, fulfil = shop_backend
    engine = sa.create_engine(durable.store.url)
    orders.create(engine, checkfirst=True)
    sent: list[str] = []
    publish = messages.publish

    test_thread = threading.get_ident()

    def spy(app: Any, msgs: Any) -> Any:  # the wake-ups this thread sends (not the worker's)
        if threading.get_ident() == test_thread:
            sent.extend(str(m["args"][0]) for m in msgs if m["task"] == messages.EPISODE_TASK)
        return publish(app, msgs)

    monkeypatch.setattr(messages, "publish", spy)
    yield Shop(durable, engine, fulfil, sent)
    engine.dispose()


def test_session_commit_starts_the_instance_after_the_commit(shop: Shop) -> None:
    with Session(shop.engine) as session, session.begin():
        session.execute(orders.insert().values(id="o1"))
        iid = shop.durable.client.schedule_new_orchestration(shop.orchestrator, input="o1",
                                                             session=session)
        assert shop.state(iid) is None  # not visible outside the transaction yet
        assert shop.sent == []  # and nothing sent
    assert shop.sent == [iid]
    assert shop.completes(iid) == "shipped o1"


def test_session_rollback_leaves_nothing(shop: Shop) -> None:
    with pytest.raises(RuntimeError), Session(shop.engine) as session, session.begin():
        session.execute(orders.insert().values(id="o2"))
        iid = shop.durable.client.schedule_new_orchestration(shop.orchestrator, input="o2",
                                                             session=session)
        raise RuntimeError("the order failed")
    assert shop.state(iid) is None
    assert shop.sent == []
    with shop.engine.connect() as conn:
        assert conn.execute(sa.select(orders).where(orders.c.id == "o2")).first() is None
    with Session(shop.engine) as session, session.begin():  # a later commit sends nothing old
        session.execute(orders.insert().values(id="o2b"))
    assert shop.sent == []


def test_connection_commit_and_rollback(shop: Shop) -> None:
    client = shop.durable.client
    with shop.engine.begin() as conn:
        conn.execute(orders.insert().values(id="o3"))
        iid = client.schedule_new_orchestration(shop.orchestrator, input="o3", session=conn)
        assert shop.sent == []
    assert shop.sent == [iid]
    assert shop.completes(iid) == "shipped o3"

    with shop.engine.connect() as conn:
        lost = client.schedule_new_orchestration(shop.orchestrator, input="o4", session=conn)
        conn.rollback()
        kept = client.schedule_new_orchestration(shop.orchestrator, input="o5", session=conn)
        conn.commit()
        time.sleep(0.2)  # no wake-up for ``lost``, whatever happens next on the connection
        conn.execute(sa.select(1))  # the next transaction: the commit's wake-up goes out
        assert shop.sent == [iid, kept]
    assert shop.state(lost) is None
    assert shop.completes(kept) == "shipped o5"


def test_a_session_on_another_database_is_refused(shop: Shop, tmp_path: Path) -> None:
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    with Session(other) as session, pytest.raises(TransactionMismatchError,
                                                   match="only join a transaction on the store"):
        shop.durable.client.schedule_new_orchestration(shop.orchestrator, input="x",
                                                       session=session)
    with pytest.raises(TypeError, match="SQLAlchemy Session or Connection"):
        shop.durable.client.schedule_new_orchestration(shop.orchestrator, session="db")
    assert shop.sent == []
