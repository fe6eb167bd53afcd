"""A client app that imports no orchestrator code, for ``celery -A durable_codeless_app``: a web
tier that schedules by name. Its Durable is made before the app is configured (as an easy order
in a Django project's proj/celery.py); the store comes from the configuration, never from the
SQLite default."""

from __future__ import annotations

import os

from celery import Celery

from celery_durable import Durable

app = Celery("durable-codeless", set_as_current=False)
durable = Durable(app)  # before the configuration: settings are read when first needed


class Config:
    broker_url = "filesystem://"
    broker_transport_options = {
        "data_folder_in": os.environ["DURABLE_CLI_BROKER"],
        "data_folder_out": os.environ["DURABLE_CLI_BROKER"],
        "control_folder": os.path.join(os.environ["DURABLE_CLI_BROKER"], "control")}
    task_default_queue = os.environ["DURABLE_CLI_QUEUE"]
    result_backend = None
    task_ignore_result = True
    durable_store_url = os.environ["DURABLE_CLI_STORE"]


app.config_from_object(Config)
