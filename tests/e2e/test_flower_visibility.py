"""What monitoring tools (Flower, ``celery events``, broker UIs) see of durable orchestrations.

No worker and no Flower here: the app publishes real messages to a real Redis queue (the client
schedules; the test runs the episodes itself with ``durable.runner.run``), and the test reads
them back raw with kombu, as a monitor would see them:

- the orchestration task's ``argsrepr`` header names the instance and the orchestrator;
- an activity message is the activity's own task (its name in the ``task`` header) with the
  deterministic id ``{instance}:{execution[:8]}:{task id}:{attempt}``;
- a timer message carries an ETA.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import workflows as wf
from celery import Celery
from kombu import Connection
from services import REDIS_URL, require

from celery_durable import Durable
from celery_durable.engine import history as h
from celery_durable.engine.failure import FailureDetails
from celery_durable.runtime import messages
from celery_durable.runtime.episode import completion_item
from celery_durable.store import InboxItem

pytestmark = pytest.mark.e2e

BROKER = f"{REDIS_URL}/5"


class Setup:
    """An app publishing to its own Redis queue (nobody consumes it) and a raw reader of it."""

    def __init__(self, tmp: Path) -> None:
        self.queue = f"durable-flower-{uuid.uuid4().hex[:8]}"
        self.app = Celery("e2e-flower", broker=BROKER, set_as_current=False)
        self.app.conf.update(task_default_queue=self.queue, result_backend=None,
                             task_ignore_result=True, durable_sweeper_enabled=False)
        self.durable = Durable(self.app, store_url=f"sqlite:///{tmp / 'store.sqlite3'}")
        self.connection = Connection(BROKER)

    @property
    def queues(self) -> list[str]:
        """The episode queue and the two every worker of it also consumes: new instances'
        first episodes (``.starts``) and timers (``.timers``)."""
        return [self.queue, f"{self.queue}.starts", f"{self.queue}.timers"]

    def take_all(self) -> list[Any]:
        """Every message waiting in the queues, oldest first in each (kombu ``basic_get``,
        acked)."""
        channel = self.connection.default_channel
        found = []
        for queue in self.queues:
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                found.append(message)
        return found

    def take_one(self) -> Any:
        found = self.take_all()
        assert len(found) == 1, [m.headers.get("task") for m in found]
        return found[0]

    def close(self) -> None:
        for queue in self.queues:
            with contextlib.suppress(Exception):
                self.connection.default_channel.queue_delete(queue)
        self.connection.release()
        self.durable.store.dispose()

    def start(self, orchestrator: Any, input: Any) -> tuple[str, str, Any]:
        """Schedule (the orchestration message is published), run the first episode here;
        returns (instance id, execution id, the orchestration message read back)."""
        iid = f"flower-{uuid.uuid4().hex[:12]}"
        self.durable.client.schedule_new_orchestration(orchestrator, input=input, instance_id=iid)
        wake_up = self.take_one()
        assert self.durable.runner.run(iid, wait=True)
        record = self.durable.store.get_instance(iid)
        assert record is not None
        return iid, record.execution_id, wake_up

    def scheduled(self, iid: str, kind: str = "TaskScheduled") -> list[h.HistoryEvent]:
        return [e for e in self.durable.store.get_history(iid) if e.kind == kind]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    require("redis")
    s = Setup(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_orchestration_message_names_instance_and_orchestrator(setup: Setup) -> None:
    iid, _, message = setup.start(wf.sequence, 3)
    headers = message.headers
    assert headers["task"] == messages.EPISODE_TASK
    assert iid in headers["argsrepr"] and "e2e.sequence" in headers["argsrepr"]
    assert headers["argsrepr"] == repr((iid, "e2e.sequence"))
    args, kwargs, _ = message.decode()
    assert args[:2] == [iid, "e2e.sequence"]
    # a new instance's first episode: on the starts queue, ahead of nothing that runs already
    assert message.delivery_info.get("routing_key") == f"{setup.queue}.starts"


def test_sub_orchestration_message_names_the_child(setup: Setup) -> None:
    iid, _, _ = setup.start(wf.parent, 2)
    found = setup.take_all()
    assert [m.headers["task"] for m in found] == [messages.EPISODE_TASK] * 2
    children = {e.task_id: f"{iid}:{e.task_id}" for e in setup.scheduled(
        iid, "SubOrchestrationCreated")}
    assert sorted(m.headers["argsrepr"] for m in found) == sorted(
        repr((child, "e2e.child")) for child in children.values())


def test_activity_message_is_the_activity_with_a_deterministic_id(setup: Setup) -> None:
    iid, execution, _ = setup.start(wf.sequence, 3)
    (scheduled,) = setup.scheduled(iid)
    message = setup.take_one()
    headers = message.headers
    expected_id = f"{iid}:{execution[:8]}:{scheduled.task_id}:1"
    assert headers["task"] == "e2e.add"  # its own name, as Flower lists it
    assert headers["id"] == expected_id
    assert message.properties["correlation_id"] == expected_id
    assert headers["shadow"] is None
    assert headers[messages.DURABLE_HEADER] == [iid, execution, scheduled.task_id, 1,
                                                "e2e.sequence"]
    assert headers["argsrepr"] == repr([[0, 0]])  # the activity's input, readable
    args, _, _ = message.decode()
    assert args == [[0, 0]]


def test_retried_activity_message_id_counts_the_attempt(setup: Setup) -> None:
    iid, execution, _ = setup.start(wf.retry, 3)
    first = setup.take_one()
    (attempt1,) = setup.scheduled(iid)
    assert first.headers["task"] == "e2e.flaky"
    assert first.headers["id"] == f"{iid}:{execution[:8]}:{attempt1.task_id}:1"
    now = datetime.now(timezone.utc)
    failed = h.task_failed(attempt1.task_id, FailureDetails("attempt 1 failed", "ConnectionError"),
                           now)
    assert setup.durable.runner.run(iid, [completion_item(execution, failed)])
    retry_timer = setup.take_one()  # the wait before attempt 2 is a durable timer
    assert retry_timer.headers["task"] == messages.TIMER_TASK
    _, _, timer_id, fire_at = retry_timer.decode()[0]
    fired = h.timer_fired(timer_id, datetime.fromisoformat(fire_at), now)
    item = InboxItem(f"timer:{execution}:{timer_id}", fired, execution)
    assert setup.durable.runner.run(iid, [item])
    second = setup.take_one()
    attempt2 = setup.scheduled(iid)[-1]
    assert attempt2.task_id != attempt1.task_id  # each attempt gets its own task id
    assert second.headers["task"] == "e2e.flaky"
    assert second.headers["id"] == f"{iid}:{execution[:8]}:{attempt2.task_id}:2"


def test_timer_message_has_an_eta(setup: Setup) -> None:
    before = datetime.now(timezone.utc)
    iid, execution, _ = setup.start(wf.timer, 1.0)
    (created,) = setup.scheduled(iid, "TimerCreated")
    fire_at = datetime.fromisoformat(created.data["fire_at"])
    message = setup.take_one()
    headers = message.headers
    assert headers["task"] == messages.TIMER_TASK
    assert headers["eta"] is not None
    eta = datetime.fromisoformat(headers["eta"])
    assert eta == fire_at
    assert before + timedelta(seconds=0.9) <= eta <= before + timedelta(seconds=5)
    assert iid in headers["argsrepr"]
    args, _, _ = message.decode()
    assert args == [iid, execution, created.task_id, fire_at.isoformat()]
