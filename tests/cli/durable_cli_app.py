"""The app module a subprocess loads with ``celery -A durable_cli_app``: a Celery app and its
Durable on the store, filesystem broker folder and queue named by DURABLE_CLI_* variables."""

from __future__ import annotations

import os

import workflows  # noqa: F401  (registers the orchestrators and activities)
from celery import Celery

from celery_durable import Durable

folder = os.environ["DURABLE_CLI_BROKER"]
app = Celery("durable-cli", broker="filesystem://", set_as_current=False)
app.conf.update(
    broker_transport_options={"data_folder_in": folder, "data_folder_out": folder,
                              "control_folder": os.path.join(folder, "control")},
    task_default_queue=os.environ["DURABLE_CLI_QUEUE"], result_backend=None,
    task_ignore_result=True)
durable = Durable(app, store_url=os.environ["DURABLE_CLI_STORE"])
