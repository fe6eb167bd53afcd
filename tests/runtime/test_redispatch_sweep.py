"""The sweeper's re-dispatch of overdue activities and timers, in process (SQLite store, memory
broker; the workers' answers to ``query_task`` are stubbed). Real workers killed mid-activity:
tests/reliability/test_redispatch.py."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from celery_durable import Durable
from celery_durable.engine import history as h
from celery_durable.engine.failure import FailureDetails
from celery_durable.runtime import messages
from celery_durable.runtime import redispatch as rd
from celery_durable.runtime.episode import completion_item
from celery_durable.runtime.settings import DurableSettings

BOUND = timedelta(seconds=30)
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Durable]:
    app = Celery("redispatch-test", broker="memory://", set_as_current=False)
    # the memory broker lives as long as this process: a queue of the test's own
    app.conf.task_default_queue = f"redispatch-test-{uuid.uuid4().hex[:8]}"
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")

    @durable.activity(name="rd.echo")
    def echo(ctx: Any, value: Any) -> Any:
        return value

    @durable.orchestrator(name="rd.one_activity")
    def one_activity(ctx: Any, value: Any) -> Any:
        return (yield ctx.call_activity(echo, input=value))

    @durable.orchestrator(name="rd.two_steps")
    def two_steps(ctx: Any, value: Any) -> Any:
        first = yield ctx.call_activity(echo, input=value)
        return [first, (yield ctx.call_activity(echo, input=2))]

    @durable.orchestrator(name="rd.one_timer")
    def one_timer(ctx: Any, _: Any) -> Any:
        yield ctx.create_timer(timedelta(seconds=1))
        return "fired"

    yield durable
    durable.store.dispose()


class Cluster:
    """Stands in for the broker and the workers: records what is published, answers
    ``query_task`` with ``held`` (None: nobody answers)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.published: list[messages.Message] = []
        self.held: set[str] | None = None
        self.asked: list[list[str]] = []
        monkeypatch.setattr(messages, "publish",
                            lambda app, msgs: self.published.extend(msgs))
        monkeypatch.setattr(rd, "held_by_workers", self.answer)

    def answer(self, app: Any, ids: list[str]) -> set[str] | None:
        self.asked.append(ids)
        return self.held


def started(durable: Durable, orchestrator: str, value: Any = "x") -> str:
    """An instance whose first episode ran here and sent its activity or timer, which a worker
    then took from the queue and died with (a message still in the queue is not stranded)."""
    instance_id = durable.client.schedule_new_orchestration(orchestrator, input=value)
    assert durable.runner.run(instance_id, wait=True)
    with durable.app.connection_for_write() as conn:
        conn.default_channel.queue_purge(durable.app.conf.task_default_queue)
    return instance_id


def test_a_message_still_in_its_queue_is_not_redispatched(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = durable.client.schedule_new_orchestration("rd.one_activity", input="x")
    assert durable.runner.run(instance_id, wait=True)  # its message waits in the queue
    cluster = Cluster(monkeypatch)
    cluster.held = set()
    t = datetime.now(timezone.utc) + BOUND + timedelta(seconds=1)
    assert rd.redispatch(durable, t) == 0 and cluster.published == []
    assert rd.redispatch(durable, t + BOUND) == 0  # checked again a bound later: still there
    assert len(cluster.asked) == 2


def test_the_default_bound_is_30_seconds_configurable_and_documented() -> None:
    assert DurableSettings().activity_redispatch_after == timedelta(seconds=30)
    conf = {"durable_activity_redispatch_after": 3}
    assert DurableSettings.from_conf(conf).activity_redispatch_after == timedelta(seconds=3)
    assert "| `durable_activity_redispatch_after` | 30 s |" in (DOCS / "deployment.md").read_text()
    reliability = (DOCS / "reliability.md").read_text()
    assert "## Worker crashes" in reliability and "durable_activity_redispatch_after" in reliability


def test_an_activity_nobody_holds_is_redispatched_with_its_task_id(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = started(durable, "rd.one_activity")
    cluster = Cluster(monkeypatch)
    now = datetime.now(timezone.utc)
    assert rd.redispatch(durable, now) == 0  # not overdue yet
    later = now + BOUND + timedelta(seconds=1)
    cluster.held = set()  # workers answer; none holds it
    assert rd.redispatch(durable, later) == 1
    (message,) = cluster.published
    execution_id = execution_of(durable, instance_id)
    celery_id = messages.activity_task_id(instance_id, execution_id, 0, 1)
    assert cluster.asked == [[celery_id]]
    assert message["task"] == "rd.echo" and message["args"] == ["x"]
    assert message["options"]["task_id"] == celery_id
    assert message["options"]["headers"][messages.REDISPATCH_HEADER] == 1
    assert message["options"]["headers"]["durable"][:3] == [instance_id, execution_id, 0]
    # claimed: no other sweep re-dispatches it before the next check, twice the bound later
    assert rd.redispatch(durable, later) == 0
    assert rd.redispatch(durable, later + BOUND * 1.5) == 0
    assert rd.redispatch(durable, later + BOUND * 2) == 1
    assert [m["options"]["headers"][messages.REDISPATCH_HEADER] for m in cluster.published] == [1, 2]


def test_an_activity_a_live_worker_holds_is_left_alone(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = started(durable, "rd.one_activity")
    cluster = Cluster(monkeypatch)
    execution_id = execution_of(durable, instance_id)
    cluster.held = {messages.activity_task_id(instance_id, execution_id, 0, 1)}
    t = datetime.now(timezone.utc) + BOUND + timedelta(seconds=1)
    assert rd.redispatch(durable, t) == 0
    assert rd.redispatch(durable, t + BOUND / 2) == 0  # not even asked: checked a bound later
    assert rd.redispatch(durable, t + BOUND) == 0
    assert len(cluster.asked) == 2 and cluster.published == []


def test_when_no_worker_answers_the_activity_is_redispatched(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    started(durable, "rd.one_activity")
    cluster = Cluster(monkeypatch)
    cluster.held = None
    t = datetime.now(timezone.utc) + BOUND + timedelta(seconds=1)
    assert rd.redispatch(durable, t) == 1 and len(cluster.published) == 1


def test_a_completed_activity_is_not_redispatched(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = started(durable, "rd.one_activity")
    execution_id = execution_of(durable, instance_id)
    item = completion_item(execution_id, h.task_completed(0, "x", datetime.now(timezone.utc)))
    durable.store.append_inbox(instance_id, [item])  # recorded, its episode not run yet
    cluster = Cluster(monkeypatch)
    cluster.held = set()
    t = datetime.now(timezone.utc) + BOUND + timedelta(seconds=1)
    assert rd.redispatch(durable, t) == 0
    assert durable.runner.run(instance_id, wait=True)  # now in history
    assert rd.redispatch(durable, t + BOUND * 3) == 0 and cluster.asked == []


def test_an_overdue_timer_is_redispatched_with_its_fixed_task_id(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = started(durable, "rd.one_timer")
    cluster = Cluster(monkeypatch)
    cluster.held = set()
    t = datetime.now(timezone.utc) + timedelta(seconds=1) + BOUND + timedelta(seconds=1)
    assert rd.redispatch(durable, t) == 1
    (message,) = cluster.published
    execution_id = execution_of(durable, instance_id)
    assert message["task"] == messages.TIMER_TASK
    assert message["options"]["task_id"] == messages.timer_task_id(instance_id, execution_id, 0)
    assert message["args"][:3] == [instance_id, execution_id, 0]


def execution_of(durable: Durable, instance_id: str) -> str:
    record = durable.store.get_instance(instance_id)
    assert record is not None
    return record.execution_id


def test_a_late_duplicate_completion_from_a_rerun_is_dropped(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = started(durable, "rd.two_steps", 1)
    Cluster(monkeypatch)
    eid = execution_of(durable, instance_id)
    now = datetime.now(timezone.utc)
    durable.record(instance_id, completion_item(eid, h.task_completed(0, 1, now)),
                   "rd.two_steps")
    # the re-run's completion comes after the first one was consumed (its inbox row is gone)
    durable.record(instance_id, completion_item(eid, h.task_completed(0, 99, now)),
                   "rd.two_steps")
    durable.record(instance_id, completion_item(eid, h.task_completed(1, 2, now)),
                   "rd.two_steps")
    failure = FailureDetails("a re-run failed", "RuntimeError")
    durable.record(instance_id, completion_item(eid, h.task_failed(1, failure, now)),
                   "rd.two_steps")  # after the instance ended
    history = durable.client.get_orchestration_history(instance_id)
    completions = [(e.task_id, e.data) for e in history if e.kind in h.COMPLETION_KINDS]
    assert completions == [(0, 1), (1, 2)]
    state = durable.client.get_orchestration_state(instance_id)
    assert state is not None and state.output == [1, 2]


def test_a_redispatched_message_of_a_completed_activity_does_not_run_it(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []

    @durable.activity(name="rd.counted")
    def counted(ctx: Any, value: Any) -> Any:
        ran.append(value)
        return value

    @durable.orchestrator(name="rd.counts")
    def counts(ctx: Any, value: Any) -> Any:
        return (yield ctx.call_activity(counted, input=value))

    instance_id = started(durable, "rd.counts", 7)
    Cluster(monkeypatch)
    eid = execution_of(durable, instance_id)
    header = [instance_id, eid, 0, 1, "rd.counts"]
    task = durable.app.tasks["rd.counted"]
    task.apply(args=[7], headers={"durable": header, messages.REDISPATCH_HEADER: 1})
    assert ran == [7]  # not completed yet: a re-dispatched message runs it
    task.apply(args=[7], headers={"durable": header, messages.REDISPATCH_HEADER: 2})
    assert ran == [7]  # completed: the copy is dropped
    task.apply(args=[7], headers={"durable": header})  # the broker's own redelivery runs it
    assert ran == [7, 7]
    completions = [e for e in durable.client.get_orchestration_history(instance_id)
                   if e.kind in h.COMPLETION_KINDS]
    assert len(completions) == 1


def test_the_workers_answers_count_active_reserved_and_scheduled_as_held() -> None:
    class Inspect:
        def __init__(self, replies: Any) -> None:
            self.replies = replies

        def query_task(self, *ids: str) -> Any:
            return self.replies

    class App:
        def __init__(self, replies: Any) -> None:
            self.control = type("Control", (), {
                "inspect": lambda _, timeout, connection: Inspect(replies)})()

        def connection_for_read(self) -> Any:
            return contextlib.nullcontext()

    replies = {"w1@h": {"a": ["active", {}], "b": ["ready", {}]},
               "w2@h": {"c": ["reserved", {}], "d": ["scheduled", {}]},
               "w3@h": {"error": "No such command"}, "w4@h": None}
    assert rd.held_by_workers(App(replies), ["a", "b", "c", "d", "e"]) == {
        "a", "c", "d"}
    assert rd.held_by_workers(App({}), ["a"]) is None
    assert rd.held_by_workers(App(None), ["a"]) is None
