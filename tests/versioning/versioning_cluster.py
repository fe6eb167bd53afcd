"""Durables of several versions on one SQLite store and one filesystem broker folder, driven
episode by episode (no worker), with the broker's messages read back from the folder."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from celery_durable import Durable, VersioningOptions

QUEUE = "episodes"


@dataclass
class Sent:
    """A message the filesystem broker held: its queue, task, args, kwargs, ETA and the
    ``durable`` header of an orchestrated activity."""

    queue: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    eta: str | None
    durable: list[Any] | None = None


class Cluster:
    """Durables sharing one store and one broker folder, as workers of several versions do."""

    def __init__(self, tmp: Path, stack: ExitStack) -> None:
        self.folder = tmp / "broker"
        (self.folder / "control").mkdir(parents=True)
        self.store_url = f"sqlite:///{tmp / 'store.sqlite3'}"
        self._stack = stack

    def durable(self, versioning: VersioningOptions | None = None,
                declare: Callable[[Durable], None] | None = None) -> Durable:
        app = Celery("versioning", broker="filesystem://", set_as_current=False)
        app.conf.update(
            broker_transport_options={"data_folder_in": str(self.folder),
                                      "data_folder_out": str(self.folder),
                                      "control_folder": str(self.folder / "control")},
            task_default_queue=QUEUE, result_backend=None, task_ignore_result=True,
            durable_recovery_grace=0.0)
        durable = Durable(app, store_url=self.store_url, versioning=versioning)
        self._stack.callback(durable.store.dispose)
        if declare is not None:
            declare(durable)
        return durable

    def take_sent(self) -> list[Sent]:
        """The messages published so far (oldest first); they are removed from the folder."""
        sent = []
        for name in sorted(os.listdir(self.folder)):
            if not name.endswith(".msg"):
                continue
            path = self.folder / name
            envelope = json.loads(path.read_text())
            args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
            headers = envelope["headers"]
            queue = name.partition(".")[2].removesuffix(".msg")
            sent.append(Sent(queue, headers["task"], args, kwargs, headers.get("eta"),
                             headers.get("durable")))
            path.unlink()
        return sent
