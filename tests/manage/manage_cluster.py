"""Real ``celery worker`` subprocesses (``-A manage_app``) for the instance-management tests,
on SQLite + the filesystem broker (the embedded default) or PostgreSQL + Redis (db 4)."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services import REDIS_URL, database, require
from workers import WorkerProcess, delete_queue, stop_all, subprocess_env

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
RELIABILITY = TESTS / "reliability"
if str(RELIABILITY) not in sys.path:
    sys.path.insert(0, str(RELIABILITY))

from crash_cluster import FAST, CrashCluster  # noqa: E402
from crash_points import ENV_MARKER, ENV_POINT, env_config, make_app  # noqa: E402

BACKENDS = ["sqlite-filesystem", "postgresql-redis"]
REDIS_DB = 4


class ManageCluster(CrashCluster):
    """`CrashCluster` whose workers load `manage_app`."""

    def start_worker(self, point: str | None = None, marker: Path | None = None,
                     pool: str = "threads", concurrency: int = 2,
                     extra_env: dict[str, str] | None = None) -> WorkerProcess:
        env = {**self.env, **(extra_env or {})}
        if point is not None:
            assert marker is not None
            env.update({ENV_POINT: point, ENV_MARKER: str(marker)})
        n = len(self.workers) + 1
        worker = WorkerProcess("manage_app:app", f"manage{n}-{self.queue}@tests",
                               pool=pool, concurrency=concurrency,
                               env=subprocess_env(env, [HERE, RELIABILITY, TESTS]), cwd=HERE,
                               log_path=self.tmp / f"worker{n}.log")
        self.workers.append(worker)
        return worker


@contextlib.contextmanager
def _backend(kind: str, tmp: Path) -> Iterator[tuple[str, dict[str, Any], str]]:
    if kind == "sqlite-filesystem":
        folder = tmp / "broker"
        (folder / "control").mkdir(parents=True)
        yield ("filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder),
                                 "control_folder": str(folder / "control"),
                                 "polling_interval": 0.01},
               f"sqlite:///{tmp / 'store.sqlite3'}")
        return
    require("redis")
    with database("postgresql", "durable_manage") as url:
        yield f"{REDIS_URL}/{REDIS_DB}", {}, url


@contextlib.contextmanager
def manage_cluster(tmp: Path, backend: str,
                   conf: dict[str, Any] | None = None) -> Iterator[ManageCluster]:
    """A fresh store and queue on ``backend`` (no worker yet); ``conf`` adds to `FAST`."""
    conf = {**FAST, **(conf or {})}
    with _backend(backend, tmp) as (broker, options, store_url):
        queue = f"durable-manage-{uuid.uuid4().hex[:8]}"
        app, durable = make_app(broker, options, store_url, queue, conf, name="manage-client")
        cluster = ManageCluster(app, durable, queue,
                                env_config(broker, options, store_url, queue, conf), tmp)
        try:
            yield cluster
        finally:
            stop_all(cluster.workers)
            durable.store.dispose()
            delete_queue(broker, queue)
