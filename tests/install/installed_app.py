"""The app of tests/install: copied to a temporary folder and loaded there by a fresh virtual
environment's ``celery -A installed_app ...``, so that everything it imports comes from the
installed wheel and its extras. The test gives the broker, queue and store in the environment.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from celery_durable import Durable, activity, orchestrator

app = Celery("installed_app", broker=os.environ["INSTALLED_BROKER_URL"])
app.conf.update(
    task_default_queue=os.environ["INSTALLED_QUEUE"], task_acks_late=True,
    worker_prefetch_multiplier=1, result_backend=None, task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    durable_store_url=os.environ["INSTALLED_STORE_URL"])
durable = Durable(app)


@activity(name="installed.greet")
def greet(ctx: Any, name: str) -> str:
    return f"Hello, {name}!"


@orchestrator(name="installed.hello")
def hello(ctx: Any, name: str) -> Any:
    greeting = yield ctx.call_activity(greet, input=name)
    return greeting
