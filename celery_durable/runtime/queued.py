"""Waiting or stranded? The check the sweeper makes before it re-dispatches an overdue task.

An activity with no completion after ``durable_activity_redispatch_after`` that no live worker
holds was either stranded by a killed worker or is still waiting its turn in a long queue (a
backlog). Re-sending the second kind only doubles the backlog, so a task counts as stranded when
its message cannot be waiting: its queue holds no message ready for delivery, or, on Redis, the
message sits in kombu's hash of delivered but unacknowledged messages, where a killed worker
leaves it until the visibility timeout. (RabbitMQ gives a dead consumer's messages back at once;
kombu's filesystem transport has deleted a message once it is delivered.)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from celery import Celery


def stranded(app: Celery, candidates: Mapping[str, str]) -> set[str]:
    """The ids among ``candidates`` (Celery task id -> queue name) whose message is not waiting
    for delivery in its queue."""
    if not candidates:
        return set()
    with app.connection_for_write() as conn:
        unacked = _unacked_task_ids(conn)
        ready = {queue: _ready_messages(conn, queue) for queue in set(candidates.values())}
    return {task_id for task_id, queue in candidates.items()
            if not ready[queue] or task_id in unacked}


def queue_of(app: Celery, task_name: str, queue: str | None) -> str:
    """The queue a message of ``task_name`` sent with ``queue`` (or without) goes to."""
    route = app.amqp.router.route({"queue": queue} if queue else {}, task_name)
    return str(route["queue"].name)


def _ready_messages(conn: Any, queue: str) -> int:
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:  # no such queue (the broker refuses a passive declare): nothing waits
        return 0
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def _unacked_task_ids(conn: Any) -> set[str]:
    """Task ids of the messages Redis holds as delivered but unacknowledged (empty elsewhere)."""
    if conn.transport.driver_type != "redis":
        return set()
    channel = conn.default_channel
    ids: set[str] = set()
    for raw in channel.client.hvals(channel.unacked_key):
        with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
            payload = json.loads(raw)[0]
            ids.add(str(payload["headers"]["id"]))
    return ids
