"""What every benchmark shares: a `Cluster` (store, broker, one worker subprocess, a client), the
`Marks` the worker leaves, repetitions, medians, and the `Row` a workload reports.

A cluster's worker is ``celery -A bench_app worker --pool prefork --concurrency 2`` with late acks
and a prefetch of 1 (`workers.celery_app`); it runs the plain Celery tasks and ours alike, so both
sides of a comparison run on the same worker, broker and machine, one after the other, in the
same run. Times are taken as the worker's ``time.time()`` at the end (a mark, or the store's
``completed_at``) minus the client's ``time.time()`` before it sent the first message: how often
the client looks does not change a figure.

Services (see tests/services.py): PostgreSQL for the store (a fresh database per cluster),
Redis db 9 as broker and db 10 as result backend (the plain chord's), RabbitMQ, or the embedded
default (SQLite + kombu's filesystem transport in a temporary folder).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
TESTS_DIR = BENCH_DIR.parent / "tests"
for _path in (str(BENCH_DIR), str(TESTS_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bench_app  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from services import RABBITMQ_URL, REDIS_URL, database, reachable  # noqa: E402
from workers import WorkerProcess, delete_queue, stop_all, subprocess_env, wait_until  # noqa: E402

from celery_durable.store.schema import instances  # noqa: E402

BROKER_DB = 9
BACKEND_DB = 10
#: how often the client looks at marks or the store while it waits
POLL = 0.02
#: run against this store instead of a fresh database (it is neither created nor dropped)
ENV_STORE_URL = "BENCH_STORE_URL"


@dataclass(frozen=True)
class Backend:
    """A broker and a store: ``redis`` and ``rabbitmq`` (PostgreSQL store), ``embedded``
    (SQLite + filesystem broker, the package's no-server default)."""

    name: str
    broker: str
    store: str

    def services(self) -> list[str]:
        needed = {"redis": ["redis"], "rabbitmq": ["rabbitmq"], "filesystem": []}[self.broker]
        return needed + (["postgresql"] if self.store == "postgresql" else [])

    def missing(self) -> list[str]:
        return [s for s in self.services() if not reachable(s)]


REDIS = Backend("redis", "redis", "postgresql")
RABBITMQ = Backend("rabbitmq", "rabbitmq", "postgresql")
EMBEDDED = Backend("embedded", "filesystem", "sqlite")
BACKENDS = {b.name: b for b in (REDIS, RABBITMQ, EMBEDDED)}


@dataclass
class Row:
    """One comparison: medians of ours and of plain Celery, and the target it is held to.

    ``ratio`` is ours / plain unless ``value`` is given (an absolute figure, e.g. lateness, or a
    count); ``limit``: the largest passing ratio or value; ``extra``: figures for the report."""

    workload: str
    backend: str
    n: int
    unit: str
    plain: float | None
    ours: float
    limit: float | None
    target: str
    value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is not None:
            return self.value
        if not self.plain:
            return None
        return self.ours / self.plain

    @property
    def passed(self) -> bool | None:
        if self.limit is None or self.ratio is None:
            return None
        return self.ratio <= self.limit


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p`` percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Marks:
    """The worker's time stamps, read from the marks folder (see `bench_app.mark`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def token(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    def read(self, token: str) -> list[tuple[float, str]]:
        """The token's marks so far: (time, text), complete lines only."""
        try:
            text = (self.folder / token).read_text()
        except FileNotFoundError:
            return []
        marks = []
        for line in text.split("\n")[:-1]:
            stamp, _, rest = line.partition(" ")
            marks.append((float(stamp), rest))
        return marks

    def wait(self, token: str, count: int, timeout: float,
             cluster: Cluster) -> list[tuple[float, str]]:
        """The token's marks once there are ``count`` of them."""
        found = wait_until(f"{count} mark(s) of {token}",
                           lambda: (marks := self.read(token)) and len(marks) >= count and marks,
                           time.monotonic() + timeout, [cluster.worker], interval=POLL)
        return list(found)


class Cluster:
    """A store, a broker, one worker subprocess running `bench_app`, and a client app.

    ``with Cluster(backend) as cluster:`` creates a fresh database (or SQLite file), a unique
    queue, starts the worker and waits until it runs a task; on exit it stops the worker, deletes
    the queue and drops the database. ``options``: extra worker command-line options.
    """

    def __init__(self, backend: Backend, options: Sequence[str] = ()) -> None:
        self.backend = backend
        self.options = list(options)
        self._stack = contextlib.ExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"durable-bench-{backend.name}-"))
        self.marks = Marks(self.tmp / "marks")
        self.counters_dir = self.tmp / "counters"
        self.queue = f"durable-bench-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def _broker(self) -> tuple[str, dict[str, Any]]:
        if self.backend.broker == "redis":
            return f"{REDIS_URL}/{BROKER_DB}", {}
        if self.backend.broker == "rabbitmq":
            return RABBITMQ_URL, {}
        folder = self.tmp / "broker"
        (folder / "control").mkdir(parents=True)
        # as the example project's embedded setup (example_project/app.py)
        return "filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder),
                                 "control_folder": str(folder / "control")}

    def _start(self) -> None:
        stack = self._stack
        stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        for folder in (self.marks.folder, self.counters_dir):
            folder.mkdir()
        if os.environ.get(ENV_STORE_URL):  # an existing store, e.g. bench/million.py's
            self.store_url = os.environ[ENV_STORE_URL]
        elif self.backend.store == "postgresql":
            self.store_url = stack.enter_context(database("postgresql", "durable_bench"))
        else:
            self.store_url = f"sqlite:///{self.tmp / 'store.sqlite3'}"
        self.broker_url, transport = self._broker()
        backend = f"{REDIS_URL}/{BACKEND_DB}" if reachable("redis") else None
        self._client_options = {"backend": backend, "transport": transport}
        self.app, self.durable = bench_app.make_app(
            self.broker_url, self.store_url, self.queue, backend=backend, transport=transport,
            name="bench-client")
        stack.callback(delete_queue, self.broker_url, self.queue)
        stack.callback(self.durable.store.dispose)
        self.durable.store.create_schema()
        env = {bench_app.ENV_BROKER: self.broker_url, bench_app.ENV_TRANSPORT:
               json.dumps(transport), bench_app.ENV_BACKEND: backend or "",
               bench_app.ENV_STORE: self.store_url, bench_app.ENV_QUEUE: self.queue,
               bench_app.ENV_MARKS: str(self.marks.folder),
               bench_app.ENV_COUNTERS: str(self.counters_dir)}
        self.worker = WorkerProcess(
            "bench_app:app", f"{self.queue}@bench",
            env=subprocess_env(env, [BENCH_DIR, TESTS_DIR]), cwd=BENCH_DIR,
            log_path=self.tmp / "worker.log", options=["--loglevel", "WARNING", *self.options],
            stop_timeout=30)
        stack.callback(stop_all, [self.worker])
        stack.push(self._print_log_on_error)
        token = self.marks.token("ready")
        self.app.send_task(bench_app.PLAIN_NOOP, (token,))
        self.marks.wait(token, 1, 90, self)

    def _print_log_on_error(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is not None and kind is not KeyboardInterrupt:
            log(f"worker log ({self.worker.log_path}):\n{self.worker.log()[-5000:]}")

    @contextlib.contextmanager
    def client_episodes(self) -> Iterator[None]:
        """Within the block the client runs the episodes its calls cause
        (``durable_client_episodes``); the worker is the same."""
        saved = self.app, self.durable
        self.app, self.durable = bench_app.make_app(
            self.broker_url, self.store_url, self.queue, name="bench-client-episodes",
            client_episodes=True, **self._client_options)
        try:
            yield
        finally:
            self.durable.store.dispose()
            self.app, self.durable = saved

    # -- our side ------------------------------------------------------------------------------

    def schedule(self, orchestrator: str, input: Any, instance_id: str | None = None) -> str:
        return self.durable.client.schedule_new_orchestration(orchestrator, input=input,
                                                              instance_id=instance_id)

    def wait_completed(self, prefix: str, count: int, timeout: float) -> list[tuple[str, float]]:
        """Once ``count`` instances whose ids start with ``prefix`` have completed: (id,
        completed_at as a POSIX time) of each. Raises if one ends otherwise."""
        # (the range lets the primary key find them in a store of millions: bench/million.py)
        query = (sa.select(instances.c.instance_id, instances.c.status, instances.c.completed_at)
                 .where(instances.c.instance_id.like(f"{prefix}%"),
                        instances.c.instance_id >= prefix,
                        instances.c.instance_id < prefix + "\x7f",
                        instances.c.status.in_(["COMPLETED", "FAILED", "TERMINATED"])))
        engine = self.durable.store.engine

        def ended() -> list[Any]:
            with engine.connect() as conn:
                rows = conn.execute(query).all()
            return rows if len(rows) >= count else []

        rows = wait_until(f"{count} orchestration(s) {prefix}*", ended,
                          time.monotonic() + timeout, [self.worker], interval=POLL * 2)
        failed = [r for r in rows if r.status != "COMPLETED"]
        if failed:
            raise RuntimeError(f"{len(failed)} orchestration(s) did not complete: {failed[:3]}")
        return [(r.instance_id, _posix(r.completed_at)) for r in rows]

    def counters(self) -> dict[str, Any]:
        """The worker's counters, summed over its pool processes (see `bench_app`)."""
        total: dict[str, Any] = {"episodes": 0, "events_processed": 0, "hits": 0, "misses": 0,
                                 "waited": 0,
                                 "tasks": {}}
        for path in self.counters_dir.glob("*.json"):
            data = json.loads(path.read_text())
            for key in ("episodes", "events_processed", "hits", "misses", "waited"):
                total[key] += data.get(key, 0)
            for name, values in data["tasks"].items():
                old = total["tasks"].get(name, [0, 0.0, 0])
                total["tasks"][name] = [o + v for o, v in zip(old, values, strict=True)]
        return total

    def settled_counters(self) -> dict[str, Any]:
        """`counters` after the worker's writers caught up (they write every 0.1 s)."""
        time.sleep(0.4)
        return self.counters()


def counter_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` of two `Cluster.counters`."""
    zero = [0, 0.0, 0]
    delta: dict[str, Any] = {k: after[k] - before[k] for k in after if k != "tasks"}
    delta["tasks"] = {name: [a - b for a, b in zip(v, before["tasks"].get(name, zero),
                                                   strict=True)]
                      for name, v in after["tasks"].items()}
    return delta


def _posix(value: Any) -> float:
    from celery_durable.store.records import from_db_time

    return from_db_time(value).timestamp()


def alternate(reps: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each side ``reps`` times, alternating which goes first; their figures by side."""
    names = list(sides)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            figures[name].append(sides[name]())
    return figures
