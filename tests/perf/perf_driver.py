"""A deterministic worker in the test's own process, for structural-cost tests (counts, never
times): the real runtime (the ``Durable``, its store, episode runner and state cache, the real
activity task), but the messages it publishes are executed here, one at a time, in order.

`InProcessWorker` records what the runtime publishes (Celery's ``before_task_publish`` signal:
body and headers as they go to the broker; the broker, kombu's filesystem transport in a
temporary folder, keeps them, nobody consumes them) and `step` runs the oldest one as a worker
would: an activity message through the activity's Celery task (``Task.apply`` with the
message's headers: the function runs, its completion is recorded and the next episode runs
inline), an episode message through the episode task.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from celery_durable import Durable, activity, orchestrator
from celery_durable.runtime import messages


@activity(name="perf.echo")
def echo(ctx: Any, value: Any) -> Any:
    return value


@orchestrator(name="perf.sequence")
def sequence(ctx: Any, n: int) -> Any:
    """``n`` activities one after the other."""
    for i in range(n):
        yield ctx.call_activity(echo, input=i)
    return n


@dataclass
class Published:
    task: str
    body: Any
    headers: dict[str, Any]


class InProcessWorker:
    """Runs what ``durable`` publishes, in this process (see the module docstring)."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        self.queue: deque[Published] = deque()
        self.published: list[Published] = []
        self._lock = threading.Lock()

    def _seen(self, sender: str | None = None, body: Any = None, headers: Any = None,
              **_: Any) -> None:
        message = Published(sender or "", body, dict(headers or {}))
        with self._lock:
            self.queue.append(message)
            self.published.append(message)

    @contextlib.contextmanager
    def running(self) -> Iterator[InProcessWorker]:
        before_task_publish.connect(self._seen, weak=False)
        try:
            yield self
        finally:
            before_task_publish.disconnect(self._seen)

    def step(self) -> Published:
        """Run the oldest published message; return it."""
        with self._lock:
            message = self.queue.popleft()
        self.run(message)
        return message

    def run(self, message: Published) -> None:
        """Run ``message`` (taken off `queue`) as a worker would."""
        task = self.durable.app.tasks[message.task]
        args, kwargs = (message.body[0], message.body[1]) if message.body else ([], {})
        result = task.apply(args=args, kwargs=kwargs, headers=message.headers,
                            task_id=message.headers.get("id") or uuid.uuid4().hex, throw=True)
        result.get(propagate=True)

    def drain(self) -> int:
        """Run messages until none is left; return how many ran."""
        ran = 0
        while self.queue:
            self.step()
            ran += 1
        return ran


def is_activity(message: Published) -> bool:
    return messages.DURABLE_HEADER in message.headers


def make_durable(store_url: str, tmp: Path, **conf: Any) -> Durable:
    """A Durable on ``store_url`` whose broker is kombu's filesystem transport under ``tmp``
    (nothing consumes it), without the sweeper."""
    folder = tmp / "broker"
    (folder / "control").mkdir(parents=True, exist_ok=True)
    app = Celery(f"perf-{uuid.uuid4().hex[:6]}", broker="filesystem://", set_as_current=False)
    app.conf.update(
        broker_transport_options={"data_folder_in": str(folder), "data_folder_out": str(folder),
                                  "control_folder": str(folder / "control")},
        task_default_queue="perf", task_acks_late=True, worker_prefetch_multiplier=1,
        result_backend=None, task_ignore_result=True, durable_sweeper_enabled=False, **conf)
    durable = Durable(app, store_url=store_url)
    durable.store.create_schema()
    return durable
