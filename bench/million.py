"""million: a PostgreSQL store of N instances (default 1,000,000) with their histories, for the
measurements at scale (metrics scrape, dashboard pages, ``durable list``, purge; see
docs/operations.md "Measured at 1,000,000 instances").

The rows are written by PostgreSQL itself (``INSERT ... SELECT`` over ``generate_series``, in
batches of 100,000), the schema by `Store.create_schema`, so a million instances take a few
minutes. The data set, spread over 90 days of ``created_at``:

- 5 orchestrators (``order``, ``billing``, ``shipping``, ``report``, ``onboarding``);
- 93% COMPLETED, 4% FAILED, 1% TERMINATED (each with 4 history events: started, an activity
  scheduled and completed, the end), 2% RUNNING: half sleep on a durable timer due in 30 days (2
  events and a timer row), half wait for an external event (1 event); 0.1% PENDING with a start
  scheduled in a day (a start timer and the start in their inbox).

Nothing in it is due, overdue or stranded, so a worker's sweeper on the same store has nothing to
do with it (``bench/seq.py`` can run beside it: ``BENCH_STORE_URL``).

Run: ``.venv/bin/python bench/million.py [--url URL] [--instances N]`` (default URL: database
``durable_million`` on the local server, created if missing, emptied first).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery_durable.store import Store  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/durable_million"
BATCH = 100_000
DAYS = 90

# i % 1000 decides the status: RUNNING for 0-19, PENDING for 20, FAILED for 21-60, TERMINATED for
# 61-70, COMPLETED otherwise (the SQL below repeats these bounds)
_STATUS = """CASE WHEN i % 1000 < 20 THEN 'RUNNING' WHEN i % 1000 = 20 THEN 'PENDING'
  WHEN i % 1000 <= 60 THEN 'FAILED' WHEN i % 1000 <= 70 THEN 'TERMINATED' ELSE 'COMPLETED' END"""
_NAMES = "(ARRAY['order','billing','shipping','report','onboarding'])[1 + i % 5]"

_INSTANCES = f"""
INSERT INTO durable_instances (instance_id, name, version, status, input, output, failure,
  custom_status, parent_instance_id, parent_task_id, parent_execution_id, execution_id,
  generation, history_len, tags, created_at, updated_at, completed_at, start_at)
SELECT 'm-' || lpad(i::text, 8, '0'), {_NAMES}, NULL, {_STATUS},
  '{{"order_id": ' || i || ', "items": [1, 2, 3]}}',
  CASE WHEN {_STATUS} = 'COMPLETED' THEN '{{"shipped": true}}' END,
  CASE WHEN {_STATUS} = 'FAILED' THEN '{{"message": "card declined", "error_type": "PaymentError", "stack_trace": null}}' END,
  NULL, NULL, NULL, NULL, md5(i::text), 0,
  CASE WHEN {_STATUS} = 'RUNNING' THEN 1 + i % 2 WHEN {_STATUS} = 'PENDING' THEN 0 ELSE 4 END,
  NULL, created, created + interval '2 seconds',
  CASE WHEN {_STATUS} IN ('COMPLETED', 'FAILED', 'TERMINATED') THEN created + interval '3 seconds' END,
  CASE WHEN {_STATUS} = 'PENDING' THEN now() at time zone 'utc' + interval '1 day' END
FROM (SELECT i, (now() at time zone 'utc') - interval '{DAYS} days'
             + (i * interval '{DAYS} days') / :n AS created
      FROM generate_series(:lo, :hi - 1) AS i) AS s
"""

_EVENT = """'{{"input": {{"order_id": ' || i || '}}, "version": null, "parent_instance_id": null, "parent_task_id": null, "generation": 0}}'"""

_HISTORY = f"""
INSERT INTO durable_history (instance_id, execution_id, seq, kind, timestamp, task_id, name, data)
SELECT 'm-' || lpad(i::text, 8, '0'), md5(i::text), e.seq, e.kind,
  created + e.seq * interval '500 milliseconds', e.task_id, e.name, e.data
FROM (SELECT i, {_STATUS} AS status, (now() at time zone 'utc') - interval '{DAYS} days'
             + (i * interval '{DAYS} days') / :n AS created
      FROM generate_series(:lo, :hi - 1) AS i) AS s
CROSS JOIN LATERAL (VALUES
  (0, 'ExecutionStarted', NULL::int, {_NAMES}, {_EVENT.format()}),
  (1, CASE WHEN status = 'RUNNING' THEN 'TimerCreated' ELSE 'TaskScheduled' END, 0,
      CASE WHEN status = 'RUNNING' THEN NULL ELSE 'charge' END,
      CASE WHEN status = 'RUNNING'
           THEN '{{"fire_at": "' || to_char(now() at time zone 'utc' + interval '30 days', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00"}}'
           ELSE '{{"input": ' || i || ', "attempt": 1}}' END),
  (2, CASE WHEN status = 'FAILED' THEN 'TaskFailed' ELSE 'TaskCompleted' END, 0, NULL,
      CASE WHEN status = 'FAILED'
           THEN '{{"message": "card declined", "error_type": "PaymentError", "stack_trace": null}}'
           ELSE '"ok"' END),
  (3, 'ExecutionCompleted', NULL, NULL,
      '{{"status": "' || status || '", "output": null, "failure": null}}')
) AS e(seq, kind, task_id, name, data)
WHERE (status IN ('COMPLETED', 'FAILED', 'TERMINATED'))
   OR (status = 'RUNNING' AND e.seq < 1 + i % 2)
"""

_TIMERS = """
INSERT INTO durable_timers (instance_id, execution_id, task_id, fire_at, dispatched_at)
SELECT 'm-' || lpad(i::text, 8, '0'), md5(i::text),
  CASE WHEN i % 1000 = 20 THEN -1 ELSE 0 END,
  now() at time zone 'utc' + CASE WHEN i % 1000 = 20 THEN interval '1 day' ELSE interval '30 days' END,
  NULL
FROM generate_series(:lo, :hi - 1) AS i
WHERE (i % 1000 < 20 AND i % 2 = 1) OR i % 1000 = 20
"""

_INBOX = f"""
INSERT INTO durable_inbox (instance_id, execution_id, dedup_key, event, created_at)
SELECT 'm-' || lpad(i::text, 8, '0'), md5(i::text), 'start:' || md5(i::text),
  '{{"seq": -1, "kind": "ExecutionStarted", "timestamp": "' || to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00", "task_id": null, "name": "' || {_NAMES} || '", "data": ' || {_EVENT.format()} || '}}',
  now() at time zone 'utc'
FROM generate_series(:lo, :hi - 1) AS i
WHERE i % 1000 = 20
"""


def ensure_database(url: str) -> None:
    """Create the database of ``url`` when it does not exist."""
    base, name = url.rsplit("/", 1)
    admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                        {"n": name}).first() is None:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def generate(url: str, n: int) -> None:
    ensure_database(url)
    store = Store(url)
    store.create_schema()
    engine = store.engine
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE durable_instances, durable_history, durable_inbox, "
                             "durable_timers, durable_outbox, durable_wakeups, "
                             "durable_redispatches"))
    started = time.time()
    for lo in range(0, n, BATCH):
        hi = min(n, lo + BATCH)
        with engine.begin() as conn:
            for sql in (_INSTANCES, _HISTORY, _TIMERS, _INBOX):
                conn.execute(sa.text(sql), {"lo": lo, "hi": hi, "n": n})
        print(f"{hi:>9,} instances ({time.time() - started:.0f} s)", flush=True)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM ANALYZE"))
        counts = dict(conn.execute(sa.text(
            "SELECT status, count(*) FROM durable_instances GROUP BY status")).all())
        events = conn.execute(sa.text("SELECT count(*) FROM durable_history")).scalar()
    print(f"done in {time.time() - started:.0f} s: {counts}, {events:,} history events")
    store.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--instances", type=int, default=1_000_000)
    args = parser.parse_args()
    generate(args.url, args.instances)
    return 0


if __name__ == "__main__":
    sys.exit(main())
