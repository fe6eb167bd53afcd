"""Broker and database restarts mid-run, on private servers (the shared ones are never
restarted): two workers run mixed orchestrations while

- (``make chaos``) the Redis broker shuts down (saving its data, as a clean restart does), stays down for a few
  seconds and starts again on the same port: the workers reconnect and every instance completes;
- the PostgreSQL store is restarted (``pg_ctl -m fast``: every connection dropped) and later
  crashes (``-m immediate``): episodes, activities and timers that hit a dropped connection are
  retried, and every instance completes, no history event written twice.

- (``make chaos``) a RabbitMQ node of its own stops (``rabbitmqctl stop``) and starts again on
  the same port: the workers reconnect and every instance completes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import chaos_workflows as cw
import pytest
from chaos_cluster import ChaosCluster, Figures, chaos_cluster
from private_services import (
    PrivateRabbitMQ,
    PrivateRedis,
    private_postgres,
    private_rabbitmq,
    private_redis,
)
from services import require

pytestmark = pytest.mark.e2e
JOBS = 36
#: the redispatch of what a connection loss strands (Redis keeps a message that a worker had
#: reserved unacknowledged until its visibility_timeout, an hour by default)
CONF = {"durable_activity_redispatch_after": 5.0}


def run_with(cluster: ChaosCluster, rng: random.Random,
             restart: Callable[[], None]) -> tuple[float, Figures]:
    """Schedule the workload, let it run, ``restart()``, raise the events; wait for every
    instance and check. Returns the time from the restart's end to all done, and the figures."""
    cluster.schedule(cw.workload(JOBS, seed=rng.randint(0, 1000)))
    cluster.raise_events(0.5, rng)
    time.sleep(1.5)
    restart()
    back = time.monotonic()
    cluster.raise_events(1.0, rng)
    cluster.wait_all(120)
    figures = cluster.check()
    return time.monotonic() - back, figures


def restart_broker(tmp_path: Path, broker: str, server: PrivateRedis | PrivateRabbitMQ,
                   seed: int) -> None:
    """The workload on ``server``, which stops, stays down 3 s and starts again mid-run."""
    with chaos_cluster(tmp_path, broker, url=server.url, conf=CONF) as cluster, \
            cluster.logs_on_failure():
        took, figures = run_with(cluster, random.Random(seed), lambda: server.restart(down=3.0))
        print(f"\n{broker} restarted (3 s down): all done {took:.1f}s after it was back; "
              f"{figures.redispatched} task(s) re-dispatched by the sweeper")


@pytest.mark.chaos  # half a minute: make chaos
def test_redis_broker_restart(tmp_path: Path) -> None:
    with private_redis() as server:
        restart_broker(tmp_path, "redis", server, seed=21)


@pytest.mark.chaos
def test_rabbitmq_broker_restart(tmp_path: Path) -> None:
    with private_rabbitmq() as server:
        restart_broker(tmp_path, "rabbitmq", server, seed=23)


def test_postgresql_restart_and_crash(tmp_path: Path) -> None:
    require("rabbitmq")
    rng = random.Random(22)

    def restarts() -> None:
        server.restart(down=2.0, mode="fast")
        time.sleep(2.0)
        server.restart(down=1.0, mode="immediate")

    with private_postgres() as server, chaos_cluster(tmp_path, "rabbitmq", store_url=server.url,
                                                     conf=CONF) as cluster, \
            cluster.logs_on_failure():
        took, figures = run_with(cluster, rng, restarts)
        logs = cluster.logs()
        # an activity's recording tried again in place, a task retried by Celery
        met = [logs.count(text) for text in ("trying again in 0.2s", "database error",
                                             "the task will be retried")]
        assert sum(met), "no task met the database outage: the test proves nothing"
        print(f"\nPostgreSQL restarted, then crashed: {met[0]} activity outcome(s) written "
              f"again in place, {met[1]} episode or timer task(s) and {met[2]} activit(ies) "
              f"retried by Celery, {figures.reruns} activity re-run(s); all done {took:.1f}s "
              "after it was back")
