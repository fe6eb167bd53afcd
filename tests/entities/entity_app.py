"""The app of the entity tests' ``celery worker`` subprocesses (and their clients).

Environment: ENT_BROKER_URL, ENT_STORE_URL, ENT_QUEUE; ENT_MARKS, ENT_SLOW for ``slow_add``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import entity_workflows  # noqa: E402, F401  (registers the entities and orchestrators)
from workers import LazyApp, celery_app  # noqa: E402

from celery_durable import Durable  # noqa: E402


def build() -> tuple[object, Durable]:
    broker = os.environ["ENT_BROKER_URL"]
    options = {}
    if broker.startswith("filesystem"):
        folder = os.environ["ENT_BROKER_FOLDER"]
        options = {"data_folder_in": folder, "data_folder_out": folder,
                   "control_folder": os.path.join(folder, "control"), "polling_interval": 0.01}
    app = celery_app("entities", broker, os.environ["ENT_QUEUE"],
                     broker_transport_options=options, durable_sweep_interval=0.5,
                     durable_recovery_grace=2.0)
    return app, Durable(app, store_url=os.environ["ENT_STORE_URL"])


__getattr__ = LazyApp(__name__, build)
