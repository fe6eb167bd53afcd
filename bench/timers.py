"""timers: N orchestrations each sleeping 1 s (one durable timer), started at once. Lateness of
one: its ``completed_at`` (the code after the timer ran) minus the timer's ``fire_at`` (from its
TimerCreated event). Plain reference: N no-op tasks sent with ``eta`` 1 s ahead; lateness: when
the task started minus its eta.

Targets (absolute): ours median lateness under 50 ms, p99 under 500 ms.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta, timezone

import bench_app
import sqlalchemy as sa
from harness import REDIS, Cluster, Row, log, median, percentile

from celery_durable.store.schema import history

SLEEP = 1.0
MEDIAN_LIMIT_MS = 50.0
P99_LIMIT_MS = 500.0


def plain_lateness(cluster: Cluster, n: int) -> list[float]:


    token = cluster.marks.token("eta")
    for _ in range(n):
        eta = datetime.now(timezone.utc) + timedelta(seconds=SLEEP)
        cluster.app.send_task(bench_app.PLAIN_NOOP, (token, str(eta.timestamp())), eta=eta)
    marks = cluster.marks.wait(token, n, 60 + n * 0.05, cluster)
    return [stamp - float(text) for stamp, text in marks]


#: seconds after the first schedule call: the client's last one, the last first episode
phases: dict[str, float] = {}


def our_lateness(cluster: Cluster, n: int) -> list[float]:
    prefix = cluster.marks.token("sleep")
    start = time.time()
    for i in range(n):
        cluster.schedule("bench.sleep", SLEEP, instance_id=f"{prefix}-{i}")
    phases["client scheduling done (s)"] = round(time.time() - start, 2)
    ended = dict(cluster.wait_completed(prefix, n, 60 + n * 0.05))
    query = sa.select(history.c.instance_id, history.c.data, history.c.timestamp).where(
        history.c.instance_id.like(f"{prefix}%"), history.c.kind == "TimerCreated")
    with cluster.durable.store.engine.connect() as conn:
        rows = conn.execute(query).all()
    fire_at = {iid: datetime.fromisoformat(json.loads(data)["fire_at"]).timestamp()
               for iid, data, _ in rows}
    last = max(at.replace(tzinfo=timezone.utc).timestamp() for _, _, at in rows)
    phases["last first episode done (s)"] = round(last - start, 2)
    return [ended[iid] - fire_at[iid] for iid in ended]


def measure(cluster: Cluster, n: int) -> list[Row]:
    plain_lateness(cluster, 5)
    our_lateness(cluster, 5)
    plain = [s * 1000 for s in plain_lateness(cluster, n)]
    time.sleep(0.5)
    ours = [s * 1000 for s in our_lateness(cluster, n)]
    figures = {"median": (median(plain), median(ours), MEDIAN_LIMIT_MS),
               "p99": (percentile(plain, 99), percentile(ours, 99), P99_LIMIT_MS)}
    log(f"timers {cluster.backend.name} N={n}: lateness median plain "
        f"{figures['median'][0]:.1f} ms ours {figures['median'][1]:.1f} ms; p99 plain "
        f"{figures['p99'][0]:.1f} ms ours {figures['p99'][1]:.1f} ms")
    return [Row(f"timers {what}", cluster.backend.name, n, "ms late", p, o, limit,
                f"ours {what} lateness < {limit:.0f} ms", value=o,
                extra={"max ours": round(max(ours), 1), "max plain": round(max(plain), 1),
                       **phases})
            for what, (p, o, limit) in figures.items()]


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with Cluster(REDIS) as cluster:
        for row in measure(cluster, n):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
