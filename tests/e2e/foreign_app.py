"""Another team's Celery app, loaded by ``celery -A foreign_app worker``: it imports Celery only.

`test_call_task` runs it with celery_durable made unimportable (a package of that name that
raises ImportError comes first on ``PYTHONPATH``, as if it were not installed): orchestrations
call its tasks with ``ctx.call_task`` and their results come back through the link callbacks
alone. Configured through environment variables:

- ``FOREIGN_BROKER``, ``FOREIGN_BACKEND``: broker and result backend URLs
- ``FOREIGN_QUEUE``: the queue its tasks are routed to (``task_routes``)
- ``FOREIGN_MARKER``: a file it writes when the worker is ready, saying whether anything of
  celery_durable was imported
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any

from celery import Celery
from celery.signals import worker_ready

app = Celery("foreign", broker=os.environ.get("FOREIGN_BROKER", "memory://"),
             backend=os.environ.get("FOREIGN_BACKEND") or None, set_as_current=False)
app.conf.update(
    task_routes={"foreign.*": {"queue": os.environ.get("FOREIGN_QUEUE", "foreign")}},
    task_default_queue=os.environ.get("FOREIGN_QUEUE", "foreign"),
    # the team's own choice, which the callbacks of celery_durable must not depend on
    task_serializer="pickle", result_serializer="json",
    accept_content=["json", "pickle"], result_expires=600, task_acks_late=True,
    worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True)


class CardDeclined(Exception):
    """The team's own exception type (celery_durable cannot import it)."""


@app.task(name="foreign.add")
def add(x: int, y: int, *, times: int = 1) -> int:
    return (x + y) * times


@app.task(bind=True, name="foreign.flaky", autoretry_for=(ConnectionError,), max_retries=3,
          default_retry_delay=0.1)
def flaky(self: Any, fail_times: int) -> dict[str, int]:
    """Fails ``fail_times`` times (Celery retries it), then succeeds."""
    if self.request.retries < fail_times:
        raise ConnectionError(f"busy (run {self.request.retries + 1})")
    return {"runs": self.request.retries + 1}


@app.task(bind=True, name="foreign.charge", autoretry_for=(CardDeclined,), max_retries=2,
          default_retry_delay=0.1)
def charge(self: Any, card: str) -> None:
    """Always declined: Celery retries it twice, then it fails for good."""
    raise CardDeclined(f"card {card} declined (run {self.request.retries + 1})")


@app.task(name="foreign.stamp")
def stamp() -> datetime:
    return datetime(2024, 1, 1, tzinfo=timezone.utc)


@app.task(name="foreign.tags")
def tags() -> set[str]:
    return {"a", "b"}


@worker_ready.connect
def _write_marker(**_: Any) -> None:
    marker = os.environ.get("FOREIGN_MARKER")
    if marker:
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "celery_durable")
        with open(marker, "w") as file:
            json.dump({"celery_durable_modules": loaded}, file)
