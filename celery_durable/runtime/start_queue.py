"""New instances wait on a queue of their own, so that they never hold up running ones.

The first episode of a new instance (the wake-up a client's ``schedule_new_orchestration``
sends) goes to the starts queue of its episode queue: the episode queue's name + ``.starts``
(``celery.starts``). Everything that continues an instance already running (an event's
episode, an activity and the episode it runs inline, a timer, a child's end) stays on the
episode, activity and timer queues. `StartQueueStep`, a worker bootstep, makes every worker
that consumes an episode queue consume its starts queue too, with or without ``-Q``.

A worker's consumer takes from its queues in turn (kombu's Redis transport rotates the queues
it polls; RabbitMQ delivers to each queue's consumer), so a backlog of 10,000 starts is one
queue among the others: the running instances' next message is taken after at most one start,
not after the whole backlog. Broker priorities were the alternative: strict on Redis, but on
RabbitMQ they need queues declared with ``x-max-priority``, which an existing queue cannot be
changed to; a queue of their own works the same on every broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import bootsteps

from celery_durable.runtime import messages

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

#: a starts queue's name: its episode queue's + this
SUFFIX = ".starts"


def start_message(durable: Durable, instance_id: str, orchestrator: str) -> messages.Message:
    """The wake-up of a new instance's first episode, on its starts queue."""
    return messages.episode_message(instance_id, orchestrator,
                                    durable.episode_queue(orchestrator) + SUFFIX)


def wake(durable: Durable, instance_id: str) -> None:
    """Send an instance's wake-up (the sweeper's, for a stranded inbox): on its starts queue
    while it has not started, so that a long backlog of starts stays behind running instances
    when the sweeper takes its late ones for lost."""
    record = durable.store.get_instance(instance_id)
    if record is None:
        return
    if record.history_len == 0:
        messages.publish(durable.app, [start_message(durable, instance_id, record.name)])
    else:
        durable.wake(instance_id, record.name)


class StartQueueStep(bootsteps.Step):
    """Worker bootstep: a worker that consumes an episode queue also consumes its starts queue
    (see the module docstring), whatever its ``-Q``."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        from celery_durable.runtime.durable import durable_of  # (durable imports this module)
        from celery_durable.runtime.timer_queue import episode_queues

        durable = durable_of(worker.app)
        if durable is None:
            return
        queues = worker.app.amqp.queues
        consumed = set(queues.consume_from)
        for name in sorted(episode_queues(durable) & consumed):
            if name + SUFFIX not in consumed:
                queues.select_add(name + SUFFIX)
