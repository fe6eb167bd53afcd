"""The timer and starts queues (`runtime.timer_queue`, `runtime.start_queue`): where their
messages go, and which workers the bootsteps make consume them (tests/e2e/test_own_queues.py
shows why)."""

from __future__ import annotations

from types import SimpleNamespace

from celery import Celery
from celery.signals import before_task_publish

from celery_durable import Durable
from celery_durable.runtime import start_queue
from celery_durable.runtime.start_queue import StartQueueStep
from celery_durable.runtime.timer_queue import TimerQueueStep, timer_queue


def _durable(**conf: object) -> Durable:
    app = Celery("timer-queue-step", broker="memory://", set_as_current=False)
    app.conf.update(task_default_queue="shop", **conf)
    return Durable(app, store_url="sqlite://")


def _consumed_after_step(durable: Durable, selected: list[str] | None) -> set[str]:
    queues = durable.app.amqp.queues
    if selected is not None:  # the worker's -Q
        queues.select(selected)
    TimerQueueStep(SimpleNamespace(app=durable.app))
    StartQueueStep(SimpleNamespace(app=durable.app))
    return set(queues.consume_from)


def test_the_timer_queue_is_named_after_the_episode_queue() -> None:
    assert timer_queue(_durable()) == "shop.timers"
    assert timer_queue(_durable(durable_episode_queue="episodes")) == "episodes.timers"
    assert timer_queue(_durable(durable_timer_queue="ticks")) == "ticks"


def test_a_worker_of_the_episode_queue_consumes_the_timers_with_or_without_q() -> None:
    assert "shop.timers" in _consumed_after_step(_durable(), None)
    assert _consumed_after_step(_durable(), ["shop", "payments"]) == {
        "shop", "payments", "shop.timers", "shop.starts"}


def test_an_activities_only_worker_does_not_take_timers() -> None:
    assert _consumed_after_step(_durable(), ["payments"]) == {"payments"}


def test_a_new_instance_s_first_episode_goes_to_the_starts_queue() -> None:
    durable = _durable()

    @durable.orchestrator(name="qs.own", queue="orders")
    def own(ctx):  # type: ignore[no-untyped-def]
        return 1

    sent: list[str] = []

    def seen(routing_key: str | None = None, **_: object) -> None:
        sent.append(str(routing_key))

    before_task_publish.connect(seen, weak=False)  # what is sent to the (in-memory) broker
    try:
        durable.store.create_schema()
        durable.client.schedule_new_orchestration(own, instance_id="a")
        start_queue.wake(durable, "a")  # the sweeper's, while it has not started
        durable.wake("a")  # what continues it: its episode queue
    finally:
        before_task_publish.disconnect(seen)
    assert sent == ["orders.starts", "orders.starts", "orders"]
    assert "orders.starts" in _consumed_after_step(durable, ["orders"])
