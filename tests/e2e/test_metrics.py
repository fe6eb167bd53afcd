"""Prometheus metrics end to end: a real ``celery worker -E`` (prefork, 2 processes) and a real
``celery durable metrics`` exporter on PostgreSQL + Redis; the exporter's answers are parsed with
prometheus_client's own parser.

Checked: the store's gauges and counters match what ran; the episode counter and histogram
gathered from both pool processes through Celery events agree with each other; a purge lowers
no counter; a restarted exporter serves the same counters (derived from the store, and the
workers' cumulative tallies); basic auth refuses a scrape without credentials; every metric
served is one `METRICS` lists.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import workflows as wf
from prometheus_client.parser import text_string_to_metric_families
from services import REDIS_URL, database, require
from worker_app import env_config, make_app
from workers import (
    CeleryProcess,
    WorkerProcess,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import OrchestrationStatus
from celery_durable.metrics.collector import METRICS

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
TESTS_DIR = E2E_DIR.parent
BROKER = f"{REDIS_URL}/14"
AUTH = ("prom", "s3cret:pass")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int, auth: tuple[str, str] | None = AUTH) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return str(response.read().decode())


def parse(text: str) -> Samples:
    """Every sample of a scrape, by (name, sorted labels); checks each family is ours."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name in METRICS, family.name
        assert family.type == METRICS[family.name][0], (family.name, family.type)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Exporter:
    """``celery -A worker_app:app durable metrics`` on a free port, with basic auth."""

    def __init__(self, env: dict[str, str], tmp: Path, n: int) -> None:
        self.port = free_port()
        self.process = CeleryProcess(
            f"metrics exporter {n}", "worker_app:app",
            ["durable", "metrics", "--port", str(self.port), "--basic-auth", ":".join(AUTH)],
            env=env, cwd=E2E_DIR, log_path=tmp / f"exporter-{n}.log")
        wait_until("the exporter answers", lambda: scrape(self.port),
                   time.monotonic() + 60, [self.process],
                   retry_on=(OSError, urllib.error.URLError))


@contextlib.contextmanager
def running_cluster(tmp: Path) -> Iterator[tuple[Any, dict[str, str], WorkerProcess]]:
    require("redis")
    with database("postgresql", "durable_metrics") as store_url:
        queue = f"durable-metrics-{uuid.uuid4().hex[:8]}"
        app, durable = make_app(BROKER, {}, store_url, queue, name="e2e-metrics-client")
        env = subprocess_env(env_config(BROKER, {}, store_url, queue), [E2E_DIR, TESTS_DIR])
        worker = WorkerProcess("worker_app:app", f"{queue}@e2e", env=env, cwd=E2E_DIR,
                               log_path=tmp / "worker.log", options=["-E"])
        try:
            yield durable, env, worker
        finally:
            stop_all([worker])
            delete_queue(BROKER, queue)
            durable.store.dispose()


def test_exporter_against_a_real_store_and_worker(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as (durable, env, worker):
        processes: list[CeleryProcess] = [worker]
        with logs_on_failure(processes):
            client = durable.client
            first = Exporter(env, tmp_path, 1)
            processes.append(first.process)
            ids = [client.schedule_new_orchestration(wf.sequence, input=3) for _ in range(6)]
            ids += [client.schedule_new_orchestration(wf.uncaught_failure) for _ in range(2)]
            forever = client.schedule_new_orchestration(wf.waits_forever)
            client.wait_for_orchestration_start(forever, timeout=60)
            client.terminate_orchestration(forever)
            for iid in [*ids, forever]:
                client.wait_for_orchestration_completion(iid, timeout=60)

            def episodes_reported() -> Samples | None:
                samples = parse(scrape(first.port))
                total = sum(value(samples, "durable_episodes_total", orchestrator=name)
                            for name in ("e2e.sequence", "e2e.uncaught_failure",
                                         "e2e.waits_forever"))
                # every episode ended, and each process sends its whole tally every 5 s
                return samples if total >= 6 * 4 + 2 * 2 + 2 else None

            samples = wait_until("the workers' episode metrics", episodes_reported,
                                 time.monotonic() + 60, processes, interval=0.5)
            assert value(samples, "durable_store_up") == 1
            assert value(samples, "durable_instances", orchestrator="e2e.sequence",
                         status="COMPLETED") == 6
            assert value(samples, "durable_orchestrations_started_total",
                         orchestrator="e2e.sequence") == 6
            assert value(samples, "durable_orchestrations_completed_total",
                         orchestrator="e2e.sequence") == 6
            assert value(samples, "durable_orchestrations_failed_total",
                         orchestrator="e2e.uncaught_failure") == 2
            assert value(samples, "durable_orchestrations_terminated_total",
                         orchestrator="e2e.waits_forever") == 1
            assert value(samples, "durable_timers_due") == 0
            assert value(samples, "durable_oldest_idle_running_age_seconds") == 0
            for name in ("e2e.sequence", "e2e.uncaught_failure"):
                count = value(samples, "durable_episodes_total", orchestrator=name)
                assert value(samples, "durable_episode_duration_seconds_count",
                             orchestrator=name) == count
                assert value(samples, "durable_episode_duration_seconds_bucket",
                             orchestrator=name, le="+Inf") == count
                assert 0 < value(samples, "durable_episode_duration_seconds_sum",
                                 orchestrator=name) < count * 10
            assert value(samples, "durable_worker_processes_reporting") >= 1
            with pytest.raises(urllib.error.HTTPError) as refused:
                scrape(first.port, auth=None)
            assert refused.value.code == 401

            # a purge lowers the gauge, not the counters
            purged = client.purge_orchestrations_by(
                runtime_status=[OrchestrationStatus.COMPLETED])
            assert purged == 6
            after = parse(scrape(first.port))
            assert value(after, "durable_instances", orchestrator="e2e.sequence",
                         status="COMPLETED") == 0
            assert value(after, "durable_orchestrations_completed_total",
                         orchestrator="e2e.sequence") == 6
            assert value(after, "durable_orchestrations_started_total",
                         orchestrator="e2e.sequence") == 6

            # a new exporter: the same counters (the episodes with the workers' next event)
            first.process.stop()
            processes.remove(first.process)
            second = Exporter(env, tmp_path, 2)
            processes.append(second.process)
            before = value(samples, "durable_episodes_total", orchestrator="e2e.sequence")
            again = wait_until(
                "the episodes reported to a restarted exporter",
                lambda: (lambda s: s if value(s, "durable_episodes_total",
                                             orchestrator="e2e.sequence") >= before else None)(
                    parse(scrape(second.port))),
                time.monotonic() + 60, processes, interval=0.5)
            assert value(again, "durable_orchestrations_completed_total",
                         orchestrator="e2e.sequence") == 6
            assert value(again, "durable_orchestrations_failed_total",
                         orchestrator="e2e.uncaught_failure") == 2
            second.process.stop()
            processes.remove(second.process)
