"""Entity throughput on real workers (PostgreSQL + Redis db 5, one ``celery worker`` of 2 prefork
processes): N client signals on ONE hot entity, N signals spread over 1,000 entities, and N plain
Celery tasks (each an INCR in Redis) on the same worker, broker and queue. Each figure is the
time from the first send to the last operation applied (operations per second), the sends
included; the three runs alternate, and the best of each is kept.

Run: ``PYTHONPATH=. .venv/bin/python bench/entity_throughput.py [N] [REPETITIONS]``
(default 1000 operations, 2 repetitions). The worker is this module (``celery -A
bench.entity_throughput worker``), configured by the ENT_BENCH_* variables the driver sets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery

from celery_durable import Durable, EntityContext, EntityInstanceId, entity

BROKER = "redis://127.0.0.1:6379/5"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent

app = Celery("entity_bench", broker=BROKER, set_as_current=False)
QUEUE = "entity-bench"
app.conf.update(task_default_queue=QUEUE,
                task_acks_late=True, worker_prefetch_multiplier=4, result_backend=None,
                task_ignore_result=True, broker_connection_retry_on_startup=True)
durable = Durable(app, store_url=os.environ.get("ENT_BENCH_STORE", "sqlite:///bench.sqlite3"))


@entity(name="bench_counter")
def bench_counter(ctx: EntityContext, amount: int) -> None:
    ctx.set_state(ctx.get_state(int, 0) + amount)


@app.task(name="bench_entity.plain")
def plain(key: str) -> None:
    redis.Redis.from_url(BROKER).incr(key)


def _wait(check: Any, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not finish")
        time.sleep(0.01)


def run_plain(n: int) -> float:
    key = f"entity-bench-{uuid.uuid4().hex}"
    r = redis.Redis.from_url(BROKER)
    start = time.perf_counter()
    for _ in range(n):
        plain.delay(key)
    _wait(lambda: int(r.get(key) or 0) >= n)
    return time.perf_counter() - start


def run_entities(n: int, keys: int, engine: sa.Engine) -> float:
    name = uuid.uuid4().hex[:8]
    ids = [EntityInstanceId("bench_counter", f"{name}-{i}") for i in range(keys)]
    waiting = sa.text("SELECT count(*) FROM durable_inbox WHERE instance_id LIKE '@%'")
    start = time.perf_counter()
    for i in range(n):
        durable.client.signal_entity(ids[i % keys], "add", input=1)
    with engine.connect() as conn:
        _wait(lambda: conn.execute(waiting).scalar_one() == 0)
    elapsed = time.perf_counter() - start
    total = sum(m.get_state() for m in durable.client.get_all_entities(
        name="bench_counter", key_prefix=name, limit=keys).items)
    assert total == n, f"{total} applied of {n}"
    return elapsed


def main(n: int = 1000, repetitions: int = 2) -> None:
    db = f"entity_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {db}"))
    store = PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
    redis.Redis.from_url(BROKER).delete(QUEUE)  # left by an interrupted run
    env = {**os.environ, "ENT_BENCH_STORE": store,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.entity_throughput", "worker", "--pool",
         "prefork", "--concurrency", "2", "--loglevel", "WARNING", "--without-gossip",
         "--without-mingle", "-Q", QUEUE], env=env, cwd=ROOT, start_new_session=True)
    # this process is the client: the same app, on the bench's store and queue
    durable._store_url = store
    durable._settings = None
    engine = sa.create_engine(store)
    try:
        durable.store.create_schema()
        run_plain(50)  # warm up (the worker's start, connections)
        run_entities(50, 10, engine)
        figures: dict[str, list[float]] = {"plain": [], "hot": [], "spread": []}
        for _ in range(repetitions):
            figures["plain"].append(run_plain(n))
            figures["hot"].append(run_entities(n, 1, engine))
            figures["spread"].append(run_entities(n, 1000, engine))
        for what, label in (("plain", f"{n} plain Celery tasks"),
                            ("hot", f"{n} operations on one entity"),
                            ("spread", f"{n} operations over 1,000 entities")):
            best = min(figures[what])
            print(f"{label}: {best:.2f} s, {n / best:.0f} per second")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        engine.dispose()
        durable.store.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {db} WITH (FORCE)"))


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
