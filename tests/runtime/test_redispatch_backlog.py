"""An overdue task still waiting in a long queue (a backlog) is not re-dispatched; one a killed
worker left unacknowledged on Redis is, whatever waits beside it. Real Redis and RabbitMQ."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kombu import Connection
from services import RABBITMQ_URL, REDIS_URL, require
from workers import celery_app, delete_queue

from celery_durable import Durable, activity, orchestrator, when_all
from celery_durable.runtime import queued
from celery_durable.runtime.redispatch import redispatch

BROKERS = {"redis": f"{REDIS_URL}/7", "rabbitmq": RABBITMQ_URL}
NOBODY = "durable-backlog-nobody"


@activity(name="backlog.noop", queue=NOBODY)
def noop(ctx: object, value: int) -> int:
    return value


@orchestrator(name="backlog.fan")
def fan(ctx: object, n: int) -> object:
    return (yield when_all([ctx.call_activity(noop, input=i)  # type: ignore[attr-defined]
                            for i in range(n)]))


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(broker URL, a queue name of this test's own)."""
    require(request.param)
    url, queue = BROKERS[request.param], f"durable-backlog-{uuid.uuid4().hex[:8]}"
    yield url, queue
    delete_queue(url, queue)


def _send(url: str, queue: str, n: int) -> list[str]:
    app = celery_app("backlog-sender", url, queue)
    return [app.send_task("backlog.anything", task_id=f"t-{uuid.uuid4().hex}").id
            for _ in range(n)]


def test_a_task_waiting_in_its_queue_is_not_stranded(broker: tuple[str, str]) -> None:
    url, queue = broker
    app = celery_app("backlog", url, queue)
    waiting = _send(url, queue, 3)
    assert queued.stranded(app, {waiting[1]: queue}) == set()
    empty = f"{queue}-empty"
    _send(url, empty, 0)
    assert queued.stranded(app, {"lost-id": empty, waiting[2]: queue}) == {"lost-id"}
    assert queued.stranded(app, {"lost-id": f"{queue}-never-declared"}) == {"lost-id"}


KILLED_CONSUMER = """
import os, sys
from kombu import Connection
with Connection(sys.argv[1]) as conn:
    message = conn.SimpleQueue(sys.argv[2], no_ack=False).get(timeout=10)
    print(message.headers["id"], flush=True)
    os._exit(1)  # killed before the ack, as SIGKILL would leave it
"""


def test_a_message_a_killed_worker_left_unacked_on_redis_is_stranded(
        broker: tuple[str, str], tmp_path: Path) -> None:
    url, queue = broker
    if not url.startswith("redis"):
        pytest.skip("RabbitMQ gives a dead consumer's messages back at once")
    app = celery_app("backlog", url, queue)
    sent = _send(url, queue, 3)
    script = tmp_path / "killed_consumer.py"
    script.write_text(KILLED_CONSUMER)
    taken = subprocess.run([sys.executable, str(script), url, queue], capture_output=True,
                           text=True, timeout=60).stdout.strip()
    assert taken in sent
    with Connection(url) as conn:  # two messages still wait beside the stranded one
        assert conn.SimpleQueue(queue).qsize() == 2
    assert queued.stranded(app, {taken: queue}) == {taken}
    assert queued.stranded(app, {tid: queue for tid in sent if tid != taken}) == set()


def test_the_sweeper_does_not_copy_a_backlog(broker: tuple[str, str], tmp_path: Path) -> None:
    """No worker consumes the activities' queue: they are overdue, nobody holds them, and they
    are all still there; the sweeper sends no copies."""
    url, queue = broker
    app = celery_app("backlog", url, queue, durable_activity_redispatch_after=0.2,
                     task_create_missing_queues=True)
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    with Connection(url) as conn:
        conn.SimpleQueue(NOBODY).clear()  # the queue's name is fixed: start it empty
    try:
        iid = durable.client.schedule_new_orchestration(fan, input=3)
        durable.runner.run(iid, wait=True)  # the start's episode sends the 3 activities
        with Connection(url) as conn:
            backlog = conn.SimpleQueue(NOBODY)
            assert backlog.qsize() == 3
            time.sleep(0.5)
            now = datetime.now(timezone.utc)
            assert len(durable.store.overdue_tasks(now - timedelta(seconds=0.2), now, 10)) == 3
            assert redispatch(durable) == 0
            assert backlog.qsize() == 3
        # the hang was Redis'; on RabbitMQ the child's after-fork cleanup would close the
        # pooled connections this process shares with the tests that follow
        if url.startswith("redis"):
            assert _a_forked_process_starts()
    finally:
        durable.store.dispose()
        delete_queue(url, NOBODY)


def _nothing() -> None:
    pass


def _a_forked_process_starts() -> bool:
    """The sweeper's ``query_task`` left no pooled connection behind whose after-fork cleanup
    hangs a process forked later (kombu closes pooled connections in the child: one still
    waiting for the broadcast's replies blocked it for good)."""
    child = multiprocessing.get_context("fork").Process(target=_nothing)
    child.start()
    child.join(20)
    if child.exitcode is None:
        child.kill()
    return child.exitcode == 0
