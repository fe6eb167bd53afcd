"""The Celery app that test_filesystem_notify's ``celery worker`` subprocess loads: a plain app on
celery_durable's ``filesystem://`` transport (``FS_NOTIFY_OPTIONS``: its transport options as
JSON; ``FS_NOTIFY_QUEUE``: the queue). ``fs_notify.stamp`` appends ``<step> <time.time()>`` to a
file."""

from __future__ import annotations

import json
import os
import time

from workers import celery_app

from celery_durable.runtime.filesystem import install

ENV_OPTIONS = "FS_NOTIFY_OPTIONS"
ENV_QUEUE = "FS_NOTIFY_QUEUE"
STAMP = "fs_notify.stamp"

install()
app = celery_app("fs-notify", "filesystem://", os.environ.get(ENV_QUEUE, "fs-notify"),
                 broker_transport_options=json.loads(os.environ.get(ENV_OPTIONS, "{}")))


@app.task(name=STAMP)
def stamp(path: str, step: int) -> None:
    with open(path, "a") as f:
        f.write(f"{step} {time.time()}\n")
