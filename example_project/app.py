"""The example's Celery app. Embedded default: kombu ``filesystem://`` broker + SQLite store.

Run it on real servers with two environment variables, e.g.::

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \
    DURABLE_STORE_URL=postgresql+psycopg://postgres@127.0.0.1/shop make demo
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from celery_durable import Durable

HERE = Path(os.environ.get("EXAMPLE_DATA_DIR", Path.cwd() / ".example"))
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
STORE_URL = os.environ.get("DURABLE_STORE_URL", f"sqlite:///{HERE / 'example.sqlite3'}")

app = Celery("example_project", broker=BROKER_URL, include=["example_project.orders"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    durable_sweep_interval=1.0,
)
if BROKER_URL.startswith("filesystem"):
    folder = HERE / "broker"
    folder.mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder), "data_folder_out": str(folder),
        "control_folder": str(HERE / "control"),
    }
    (HERE / "control").mkdir(parents=True, exist_ok=True)

durable = Durable(app, store_url=STORE_URL)
