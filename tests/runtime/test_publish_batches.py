"""An episode's messages go out in kombu's publish batches (`messages.publish`): on Redis one
pipeline per `messages.BATCH` messages instead of a round trip each (a fan-out's first episode
publishes all of its activities at once); RabbitMQ publishes each at once. Real brokers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection
from services import RABBITMQ_URL, REDIS_URL, require
from workers import celery_app, delete_queue

from celery_durable.runtime import messages

BROKERS = {"redis": f"{REDIS_URL}/8", "rabbitmq": RABBITMQ_URL}
N = 2 * messages.BATCH + 3


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(broker kind, URL, a queue name of this test's own)."""
    require(request.param)
    url, queue = BROKERS[request.param], f"durable-batches-{uuid.uuid4().hex[:8]}"
    yield request.param, url, queue
    delete_queue(url, queue)


def waiting(kind: str, url: str, queue: str) -> list[str]:
    """Task ids of the messages waiting in ``queue``, oldest first (Redis), or just as many
    placeholders (RabbitMQ, which only tells the count)."""
    if kind == "redis":
        client = redis.Redis.from_url(url)
        bodies = client.lrange(queue, 0, -1)
        client.close()
        return [json.loads(body)["headers"]["id"] for body in reversed(bodies)]
    with Connection(url) as conn:
        count = conn.default_channel.queue_declare(queue, passive=True).message_count
    return ["?"] * count


def pushes(pipeline: Any) -> int:
    """How many messages (LPUSH commands) a Redis pipeline carries (kombu pipelines other
    commands too)."""
    return sum(str(command[0][0]).upper() == "LPUSH" for command in pipeline.command_stack)


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The messages of each Redis pipeline executed from now on (the real execute runs)."""
    executed: list[int] = []
    real_execute = redis.client.Pipeline.execute

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        executed.append(pushes(self))
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    return executed


def test_many_messages_go_out_in_batches_and_in_order(broker: tuple[str, str, str],
                                                      pipelines: list[int]) -> None:
    kind, url, queue = broker
    app = celery_app("batches", url, queue)
    ids = [f"batch-{i}-{uuid.uuid4().hex[:6]}" for i in range(N)]
    messages.publish(app, [{"task": "batches.anything", "args": [i],
                            "options": {"task_id": task_id, "queue": queue}}
                           for i, task_id in enumerate(ids)])
    found = waiting(kind, url, queue)
    if kind == "redis":
        assert found == ids  # every message, in the order given
        batches = [n for n in pipelines if n]
        assert batches == [messages.BATCH, messages.BATCH, 3], pipelines
    else:
        assert len(found) == N


def test_a_single_message_is_sent_without_a_batch(broker: tuple[str, str, str],
                                                  pipelines: list[int]) -> None:
    kind, url, queue = broker
    app = celery_app("batches", url, queue)
    messages.publish(app, [{"task": "batches.anything", "args": [1],
                            "options": {"task_id": "single", "queue": queue}}])
    assert len(waiting(kind, url, queue)) == 1
    assert not [n for n in pipelines if n]
