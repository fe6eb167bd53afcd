"""The timer queue (`runtime.timer_queue`): where timer messages go, and which workers the
bootstep makes consume it (the e2e test tests/e2e/test_timer_queue.py shows why)."""

from __future__ import annotations

from types import SimpleNamespace

from celery import Celery

from celery_durable import Durable
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
    return set(queues.consume_from)


def test_the_timer_queue_is_named_after_the_episode_queue() -> None:
    assert timer_queue(_durable()) == "shop.timers"
    assert timer_queue(_durable(durable_episode_queue="episodes")) == "episodes.timers"
    assert timer_queue(_durable(durable_timer_queue="ticks")) == "ticks"


def test_a_worker_of_the_episode_queue_consumes_the_timers_with_or_without_q() -> None:
    assert "shop.timers" in _consumed_after_step(_durable(), None)
    assert _consumed_after_step(_durable(), ["shop", "payments"]) == {
        "shop", "payments", "shop.timers"}


def test_an_activities_only_worker_does_not_take_timers() -> None:
    assert _consumed_after_step(_durable(), ["payments"]) == {"payments"}
