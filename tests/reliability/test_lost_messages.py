"""Lost broker messages: mid-run, every message on the broker is deleted (``FLUSHDB`` of a
private Redis, or a purge of the RabbitMQ queue), while two workers run a backlog of mixed
orchestrations.

The store is the source of truth, so nothing is lost for good: with the sweeper off, the run
stalls until ``celery -A app durable recover`` re-dispatches what every instance waits on, and
then every instance completes; with the sweeper on (a short interval), it brings every instance
back alone. Either way no history event is written twice. ``make test`` runs recover on
RabbitMQ and the sweeper on Redis, ``make chaos`` both on both brokers.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import chaos_workflows as cw
import pytest
from chaos_cluster import HERE, TESTS, ChaosCluster, chaos_cluster
from kombu import Connection
from private_services import PrivateRedis, private_redis
from services import RABBITMQ_URL, require
from workers import subprocess_env

pytestmark = pytest.mark.e2e
#: ``make test`` runs recover on RabbitMQ and the sweeper on Redis; ``make chaos`` both on both
RECOVER_BROKERS = [pytest.param("redis", marks=pytest.mark.chaos), "rabbitmq"]
SWEEPER_BROKERS = ["redis", pytest.param("rabbitmq", marks=pytest.mark.chaos)]
#: a backlog that keeps two workers of two processes busy for several seconds
JOBS = 36


@contextmanager
def lost_cluster(tmp: Path, broker: str, conf: dict[str, object]
                 ) -> Iterator[tuple[ChaosCluster, PrivateRedis | None]]:
    """A cluster on a private Redis (whose whole database the test may flush) or on RabbitMQ
    (the test purges only its own queue)."""
    if broker == "redis":
        with private_redis() as server, chaos_cluster(tmp, broker, url=server.url,
                                                      conf=conf) as cluster:
            yield cluster, server
    else:
        require("rabbitmq")
        with chaos_cluster(tmp, broker, url=RABBITMQ_URL, conf=conf) as cluster:
            yield cluster, None


def lose_every_message(cluster: ChaosCluster, server: PrivateRedis | None) -> int:
    """FLUSHDB the private Redis, or purge the cluster's RabbitMQ queue; returns how many
    messages were deleted (RabbitMQ: those ready; Redis: queued and unacknowledged ones)."""
    if server is not None:
        client = server.client()
        queued = int(client.llen(cluster.app.conf.task_default_queue)) + int(client.hlen("unacked"))
        client.flushdb()
        return queued
    with Connection(cluster.broker_url) as conn:
        return int(conn.default_channel.queue_purge(cluster.app.conf.task_default_queue) or 0)


def start_backlog(cluster: ChaosCluster, rng: random.Random) -> None:
    jobs = cw.workload(JOBS, seed=11)
    cluster.schedule(jobs)
    cluster.raise_events(0.5, rng)
    time.sleep(1.5)


def stalled(cluster: ChaosCluster, quiet: float = 3.0, limit: float = 30.0) -> int:
    """Wait until the number of unfinished instances has not changed for ``quiet`` seconds (or
    ``limit``), and return it."""
    deadline = time.monotonic() + limit
    last, since = cluster.unfinished(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cluster.unfinished()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


@pytest.mark.parametrize("broker", RECOVER_BROKERS)
def test_recover_brings_every_instance_back(tmp_path: Path, broker: str) -> None:
    rng = random.Random(5)
    conf = {"durable_sweeper_enabled": False}
    with lost_cluster(tmp_path, broker, conf) as (cluster, server), cluster.logs_on_failure():
        start_backlog(cluster, rng)
        deleted = lose_every_message(cluster, server)
        cluster.raise_events(1.0, rng)
        stuck = stalled(cluster)
        assert stuck > 0, f"nothing was waiting on the {deleted} deleted message(s)"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "chaos_app", "durable", "recover"],
            cwd=HERE, env=subprocess_env(cluster.env, [HERE, TESTS]), capture_output=True,
            text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        cluster.wait_all(60)
        cluster.check()
        print(f"\n{broker}: {deleted} message(s) deleted, {stuck} instance(s) stalled; "
              f"recover then all done in {time.monotonic() - started:.1f}s\n{done.stdout}")


@pytest.mark.parametrize("broker", SWEEPER_BROKERS)
def test_the_sweeper_alone_brings_every_instance_back(tmp_path: Path, broker: str) -> None:
    rng = random.Random(6)
    conf = {"durable_sweep_interval": 1.0, "durable_recovery_grace": 2.0,
            "durable_activity_redispatch_after": 4.0}
    with lost_cluster(tmp_path, broker, conf) as (cluster, server), cluster.logs_on_failure():
        start_backlog(cluster, rng)
        deleted = lose_every_message(cluster, server)
        started = time.monotonic()
        cluster.raise_events(1.0, rng)
        cluster.wait_all(60)
        cluster.check()
        print(f"\n{broker}: {deleted} message(s) deleted; the sweeper brought every "
              f"instance back in {time.monotonic() - started:.1f}s")
