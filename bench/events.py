"""events: from ``raise_orchestration_event`` to the orchestration's next activity starting.
Ours: a ``bench.events`` orchestration waits for the event ``go``, then runs the ``bench.mark``
activity, which marks the moment it starts; the client raises the event once the orchestration
is idle (the previous round's completion recorded): two broker hops, client -> episode ->
activity. Plain reference, the same shape: a two-hop relay, the client sends
``bench.plain_relay``, which sends ``plain_noop``, which marks when it runs. Figure:
milliseconds, median of the rounds; rounds of both alternate.

Target: ours at most 1.5x the plain relay.
"""

from __future__ import annotations

import sys
import time

import bench_app
import sqlalchemy as sa
from harness import POLL, REDIS, Cluster, Row, log, median
from workers import wait_until

from celery_durable.store.schema import history

RATIO_LIMIT = 1.5
IDLE = 0.05  # the orchestration waits this long before the event, as an idle one would


def plain_relay(cluster: Cluster) -> float:
    """Seconds from sending ``plain_relay`` to the ``plain_noop`` it sends starting."""
    token = cluster.marks.token("relay")
    start = time.time()
    cluster.app.send_task(bench_app.PLAIN_RELAY, (token,))
    ((end, _),) = cluster.marks.wait(token, 1, 30, cluster)
    return end - start


class EventRounds:
    """One ``bench.events`` orchestration; `round` raises the next event and times it."""

    def __init__(self, cluster: Cluster, rounds: int) -> None:
        self.cluster = cluster
        self.iid = cluster.marks.token("events")
        self.done = 0
        cluster.schedule("bench.events", rounds, instance_id=self.iid)
        self._completed = sa.select(sa.func.count()).select_from(history).where(
            history.c.instance_id == self.iid, history.c.kind == "TaskCompleted")
        # idle: the start recorded and the orchestration waiting
        self._started = sa.select(sa.func.count()).select_from(history).where(
            history.c.instance_id == self.iid)

    def _count(self, query: sa.Select) -> int:
        with self.cluster.durable.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def round(self) -> float:
        cluster = self.cluster
        wait_until("the orchestration waiting for its event",
                   lambda: self._count(self._started) > 0
                   and self._count(self._completed) >= self.done,
                   time.monotonic() + 30, [cluster.worker], interval=POLL)
        time.sleep(IDLE)
        token = cluster.marks.token("event")
        start = time.time()
        cluster.durable.client.raise_orchestration_event(self.iid, "go", data=token)
        ((end, _),) = cluster.marks.wait(token, 1, 30, cluster)
        self.done += 1
        return end - start


def measure(cluster: Cluster, rounds: int) -> list[Row]:
    ours_rounds = EventRounds(cluster, rounds + 2)
    for _ in range(2):  # warm-up
        plain_relay(cluster)
        ours_rounds.round()
    plain: list[float] = []
    ours: list[float] = []
    for i in range(rounds):
        if i % 2:
            ours.append(ours_rounds.round())
            time.sleep(IDLE)
            plain.append(plain_relay(cluster))
        else:
            time.sleep(IDLE)
            plain.append(plain_relay(cluster))
            ours.append(ours_rounds.round())
    p, o = median(plain) * 1000, median(ours) * 1000
    log(f"events {cluster.backend.name}: plain two-hop relay {p:.2f} ms, event to activity "
        f"{o:.2f} ms, ratio {o / p:.2f}")
    return [Row("events", cluster.backend.name, rounds, "ms", p, o, RATIO_LIMIT,
                f"event -> next activity start / a plain two-hop relay <= {RATIO_LIMIT}")]


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with Cluster(REDIS) as cluster:
        for row in measure(cluster, rounds):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
