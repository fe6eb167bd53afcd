"""Timers on a queue of their own, so that a due timer never waits behind a backlog.

A timer is an ETA message (`messages.timer_message`). On the episode queue it would be fetched
only once every message ahead of it (a backlog of starts, events or activities) had been taken,
and fire that late. Timer messages go to the timer queue instead: ``durable_timer_queue``, by
default the episode queue's name + ``.timers`` (``celery.timers``). `TimerQueueStep`, a worker
bootstep, makes every worker that consumes an episode queue of its Durable consume the timer
queue as well, with or without ``-Q``: its consumer takes from both queues in turn, and an ETA
message is held in memory until it is due, so a timer is fetched as soon as it is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import bootsteps

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

#: the default timer queue's name: the episode queue's + this
SUFFIX = ".timers"


def timer_queue(durable: Durable) -> str:
    """The queue ``durable``'s timer messages are sent to."""
    settings = durable.settings
    if settings.timer_queue:
        return settings.timer_queue
    return (settings.episode_queue or durable.app.conf.task_default_queue) + SUFFIX


def episode_queues(durable: Durable) -> set[str]:
    """The queues that carry ``durable``'s episodes (the default one, and orchestrators')."""
    queues = {durable.settings.episode_queue or durable.app.conf.task_default_queue}
    queues.update(d.queue for d in durable.registry.orchestrators.values() if d.queue)
    return queues


class TimerQueueStep(bootsteps.Step):
    """Worker bootstep: a worker that consumes an episode queue of its Durable also consumes
    the timer queue (see the module docstring), whatever its ``-Q``."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        from celery_durable.runtime.durable import durable_of  # (durable imports this module)

        durable = durable_of(worker.app)
        if durable is None:
            return
        queues = worker.app.amqp.queues
        consumed = set(queues.consume_from)
        name = timer_queue(durable)
        if name not in consumed and episode_queues(durable) & consumed:
            queues.select_add(name)
