"""Random worker kills: two prefork workers run a mixed workload (sequences, fan-out/fan-in,
sub-orchestrations, timers, external events raised meanwhile, activities that fail transiently
and are retried) while a random worker's whole process group is SIGKILLed every 2-5 s and a new
worker started in its place.

What must hold: every orchestration ends COMPLETED with its expected output; every instance
(sub-orchestrations too) ends; every task id has at most one completion in its history, every
event is recorded once. On PostgreSQL + Redis (Celery's defaults, ``visibility_timeout``
included) and PostgreSQL + RabbitMQ. ``make chaos`` runs a short version and the long
one (500 orchestrations, kills for a minute) and prints a table of figures per broker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chaos_workflows as cw
import pytest
from chaos_cluster import Figures, chaos_cluster, table

pytestmark = pytest.mark.e2e
BROKERS = ["redis", "rabbitmq"]
#: the long run re-dispatches stranded activities after the default 30 s: above the queueing
#: delay of its backlog (a message waiting in a queue is held by no worker, see reliability.md)
LONG_CONF = {"durable_activity_redispatch_after": 30.0}


@pytest.fixture(scope="module")
def figures() -> Iterator[list[Figures]]:
    """The figures of this module's runs, printed as a table at the end."""
    found: list[Figures] = []
    yield found
    if found:
        print("\n\nRandom worker kills (PostgreSQL store, two prefork workers of 2 processes)\n")
        print(table(found))


def run_chaos(tmp: Path, broker: str, *, count: int, seconds: float, seed: int,
              timeout: float, conf: dict[str, Any] | None = None) -> Figures:
    rng = random.Random(seed)
    with chaos_cluster(tmp, broker, conf=conf) as cluster, cluster.logs_on_failure():
        last_kill = cluster.chaos(cw.workload(count, seed), seconds, rng)
        cluster.wait_all(timeout)
        figures = cluster.check(last_kill)
        assert figures.kills >= 2
        return figures


@pytest.mark.chaos
@pytest.mark.parametrize("broker", BROKERS)
def test_random_kills_short(tmp_path: Path, broker: str, figures: list[Figures]) -> None:
    started = time.monotonic()
    figures.append(run_chaos(tmp_path, broker, count=36, seconds=10, seed=7, timeout=90))
    print(f"{broker}: {time.monotonic() - started:.1f}s")


@pytest.mark.chaos
@pytest.mark.parametrize("broker", BROKERS)
def test_random_kills_long(tmp_path: Path, broker: str, figures: list[Figures]) -> None:
    figures.append(run_chaos(tmp_path, broker, count=500, seconds=60, seed=2026, timeout=300,
                             conf=LONG_CONF))
