"""`Publisher` sends what ``app.send_task`` sends (real Redis, its own db and queues): the same
message on the broker, the same signals, the ``task-sent`` event, and a real Celery worker runs
them with their routes, ids, parent/root ids and ETA."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from celery.utils.saferepr import saferepr
from services import REDIS_URL, require
from workers import celery_app, delete_queue

from celery_durable.runtime import messages, publisher

URL = f"{REDIS_URL}/2"  # a database of its own


@pytest.fixture
def queues() -> Iterator[tuple[str, str]]:
    """Two queues of this test's own (the default one, and one a route names)."""
    require("redis")
    names = (f"durable-pub-{uuid.uuid4().hex[:8]}", f"durable-pub-v2-{uuid.uuid4().hex[:8]}")
    yield names
    for name in names:
        delete_queue(URL, name)


def _waiting(queue: str) -> list[dict[str, Any]]:
    """The raw messages waiting in ``queue`` (Redis), oldest first, taken off it."""
    client = redis.Redis.from_url(URL)
    try:
        bodies = client.lrange(queue, 0, -1)
        client.delete(queue)
    finally:
        client.close()
    return [json.loads(body) for body in reversed(bodies)]


def _comparable(raw: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in raw["properties"].items() if k != "delivery_tag"}
    return {**raw, "properties": properties}


ACTIVITY = {"task": "pub.activity", "args": [7],
            "options": {"task_id": "i1:abcd:3:1", "headers": {messages.DURABLE_HEADER:
                                                              ["i1", "abcd", 3, 1, "orch"]}}}
_EPISODE = messages.episode_message("i1", "orch", None)
EPISODE = {**_EPISODE, "options": {**_EPISODE["options"], "task_id": "ep-1"}}  # else a uuid


@pytest.mark.parametrize("message", [ACTIVITY, EPISODE], ids=["activity", "episode"])
def test_the_message_on_the_broker_is_the_one_send_task_sends(
        queues: tuple[str, str], message: dict[str, Any]) -> None:
    default, routed = queues
    app = celery_app("pub", URL, default, task_routes={"pub.activity": {"queue": routed}})
    queue = routed if message["task"] == "pub.activity" else default
    messages.publish(app, [message])
    ours = _waiting(queue)
    options = dict(message["options"])
    app.send_task(message["task"], args=message["args"], kwargs=message.get("kwargs") or {},
                  serializer="json", **options)
    celerys = _waiting(queue)
    assert len(ours) == len(celerys) == 1
    assert _comparable(ours[0]) == _comparable(celerys[0])
    assert ours[0]["headers"]["id"] == celerys[0]["headers"]["id"]


@pytest.mark.parametrize("args", [[7], [None, True, 1.5, "short"], ["it's"], ["x" * 2000],
                                  [{"a": [1, 2]}], [10**30]])
def test_argsrepr_is_what_saferepr_gives(args: list[Any]) -> None:
    expected = saferepr(args, 1024)
    found = publisher._argsrepr(args)
    assert found in (None, expected)  # None: Celery computes it


def test_signals_and_the_task_sent_event(queues: tuple[str, str]) -> None:
    default, _ = queues
    app = celery_app("pub", URL, default, task_send_sent_event=True)
    seen: dict[str, list[Any]] = {"before": [], "after": [], "task_sent": []}

    def before(headers: Any = None, **_: Any) -> None:
        seen["before"].append(headers["id"])

    def after(headers: Any = None, **_: Any) -> None:
        seen["after"].append(headers["id"])

    def sent(task_id: Any = None, **_: Any) -> None:
        seen["task_sent"].append(task_id)

    events: list[dict[str, Any]] = []
    signals.before_task_publish.connect(before, weak=False)
    signals.after_task_publish.connect(after, weak=False)
    signals.task_sent.connect(sent, weak=False)
    try:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={"task-sent": events.append})
            with receiver.consumer_context() as (conn, _, _):
                with contextlib.suppress(TimeoutError):  # Redis subscribes at the first drain
                    conn.drain_events(timeout=0.2)
                messages.publish(app, [ACTIVITY])
                deadline = time.monotonic() + 10
                while not events and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=0.5)
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)
        signals.task_sent.disconnect(sent)
    task_id = ACTIVITY["options"]["task_id"]
    assert seen == {"before": [task_id], "after": [task_id], "task_sent": [task_id]}
    assert len(events) == 1
    event = events[0]
    assert (event["uuid"], event["name"], event["queue"]) == (task_id, "pub.activity", default)
    assert (event["root_id"], event["parent_id"], event["args"]) == (task_id, None, "[7]")
    _waiting(default)


def _worker_app(default: str, routed: str) -> tuple[Celery, list[dict[str, Any]]]:
    app = celery_app("pub-worker", URL, default,
                     task_routes={"pub.versioned": {"queue": routed}})
    ran: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(task: Any, value: Any) -> None:
        request = task.request
        with lock:
            ran.append({"task": task.name, "id": request.id, "root_id": request.root_id,
                        "parent_id": request.parent_id, "retries": request.retries,
                        "eta": request.eta, "queue": request.delivery_info.get("routing_key"),
                        "durable": (request.headers or {}).get(messages.DURABLE_HEADER)
                        if request.headers else getattr(request, messages.DURABLE_HEADER, None),
                        "value": value, "at": datetime.now(timezone.utc)})

    @app.task(name="pub.activity", bind=True, shared=False)
    def activity(self: Any, value: Any) -> None:
        record(self, value)
        if value == "chain":  # a follow-up published from inside a task, as an episode does
            messages.publish(app, [{"task": "pub.activity", "args": ["child"],
                                    "options": {"task_id": "child-" + self.request.id}}])

    @app.task(name="pub.versioned", bind=True, shared=False)
    def versioned(self: Any, value: Any) -> None:
        record(self, value)

    return app, ran


def _wait_for(ran: list[dict[str, Any]], count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(ran) < count:
        assert time.monotonic() < deadline, ran
        time.sleep(0.02)


def test_a_worker_runs_them_with_routes_ids_and_eta(queues: tuple[str, str]) -> None:
    default, routed = queues
    app, ran = _worker_app(default, routed)
    eta = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", queues=[default, routed]):
        messages.publish(app, [
            {**ACTIVITY, "args": ["chain"], "options": {**ACTIVITY["options"]}},
            {"task": "pub.versioned", "args": ["routed"], "options": {"task_id": "v-1"}},
            {"task": "pub.activity", "args": ["later"],
             "options": {"task_id": "later-1", "eta": eta.isoformat()}},
        ])
        _wait_for(ran, 4)
    by_value = {r["value"]: r for r in ran}
    first, child = by_value["chain"], by_value["child"]
    assert first["id"] == ACTIVITY["options"]["task_id"] and first["queue"] == default
    assert first["durable"] == ["i1", "abcd", 3, 1, "orch"]
    assert (first["root_id"], first["parent_id"], first["retries"]) == (first["id"], None, 0)
    assert child["id"] == "child-" + first["id"]
    assert (child["root_id"], child["parent_id"]) == (first["id"], first["id"])
    assert by_value["routed"]["queue"] == routed  # task_routes honoured
    later = by_value["later"]
    assert later["eta"] is not None and later["at"] >= eta


def test_a_send_task_patched_in_sees_every_message(queues: tuple[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """As an SDK that traces what is sent wraps ``Celery.send_task``."""
    default, _ = queues
    seen: list[str] = []
    original = Celery.send_task

    @functools.wraps(original)
    def traced(self: Celery, name: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(Celery, "send_task", traced)
    app = celery_app("pub", URL, default)
    messages.publish(app, [ACTIVITY, EPISODE])
    assert seen == ["pub.activity", messages.EPISODE_TASK]
    assert len(_waiting(default)) == 2


def test_a_task_registered_after_a_publish_gets_its_own_options(
        queues: tuple[str, str]) -> None:
    default, _ = queues
    app = celery_app("pub", URL, default)
    messages.publish(app, [ACTIVITY])  # not registered yet: no options of its own

    @app.task(name="pub.activity", time_limit=30, shared=False)
    def activity(value: Any) -> None:
        return None

    app.finalize()
    messages.publish(app, [ACTIVITY])  # registered with a time limit of its own
    before, after = _waiting(default)
    assert (before["headers"]["timelimit"], after["headers"]["timelimit"]) == ([None, None],
                                                                               [30, None])
