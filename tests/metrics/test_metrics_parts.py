"""The metrics' parts on SQLite and Redis: the collector's output parsed by prometheus_client,
the exporter's HTTP server (auth, paths), and episode tallies sent as real Celery events."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from services import REDIS_URL, require

from celery_durable import Durable, OrchestrationStatus
from celery_durable.engine import history as h
from celery_durable.metrics.collector import METRICS
from celery_durable.metrics.episodes import (
    BUCKETS,
    EpisodeEventReceiver,
    EpisodeEventSender,
    Tally,
)
from celery_durable.metrics.exporter import make_server
from celery_durable.metrics.source import MetricsSource
from celery_durable.metrics.worker import worker_metrics_enabled
from celery_durable.runtime.episode import EpisodeOutcome
from celery_durable.store import EpisodeCommit, NewInstance
from celery_durable.ui.auth import BasicAuth

COMPLETED = OrchestrationStatus.COMPLETED


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Durable]:
    app = Celery("metrics-parts", broker=f"{REDIS_URL}/14")
    found = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield found
    found.store.dispose()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.name in METRICS and family.type == METRICS[family.name][0]
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_collector_on_sqlite(durable: Durable) -> None:
    store = durable.store
    for i, status in enumerate([COMPLETED, COMPLETED, OrchestrationStatus.FAILED]):
        iid = f"i{i}"
        store.create_instance(NewInstance(iid, "shop.order"),
                              [h.execution_started("shop.order", None, _now())])
        with store.episode(iid) as ep:
            assert ep is not None
            ep.commit(EpisodeCommit(status=status, completed_at=_now(),
                                    consumed_inbox_ids=[r.id for r in ep.inbox if r.id]))
    assert store.purge("i0") == 1
    source = MetricsSource(durable, episodes=False)
    got = samples(source.scrape().decode())
    assert got[("durable_instances", (("orchestrator", "shop.order"), ("status", "COMPLETED")))] == 1
    assert got[("durable_orchestrations_completed_total", (("orchestrator", "shop.order"),))] == 2
    assert got[("durable_orchestrations_failed_total", (("orchestrator", "shop.order"),))] == 1
    assert got[("durable_orchestrations_started_total", (("orchestrator", "shop.order"),))] == 3
    assert got[("durable_store_up", ())] == 1


def test_a_broken_store_answers_store_up_zero(tmp_path: Path) -> None:
    app = Celery("metrics-broken", broker="memory://")
    broken = Durable(app, store_url=f"sqlite:///{tmp_path / 'missing' / 'store.sqlite3'}")
    got = samples(MetricsSource(broken, episodes=False).scrape().decode())
    assert got == {("durable_store_up", ()): 0}


def get(port: int, path: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(
            ":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_exporter_server(durable: Durable) -> None:
    server = make_server(MetricsSource(durable, episodes=False), "127.0.0.1", 0,
                         BasicAuth("u", "p"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert get(port, "/metrics")[0] == 401
        assert get(port, "/metrics", ("u", "wrong"))[0] == 401
        status, text = get(port, "/metrics", ("u", "p"))
        assert status == 200 and "durable_store_up 1.0" in text
        assert get(port, "/nope", ("u", "p"))[0] == 404
        assert get(port, "/", ("u", "p"))[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_tally_buckets() -> None:
    tally = Tally()
    for seconds in (0.0005, 0.003, 0.003, 20.0):
        tally.add(seconds)
    cumulative = dict(tally.cumulative())
    assert cumulative["0.001"] == 1 and cumulative["0.005"] == 3 and cumulative["10.0"] == 3
    assert cumulative["+Inf"] == 4 == tally.count
    assert len(tally.cumulative()) == len(BUCKETS) + 1
    assert Tally.from_json(tally.to_json()) == tally


def test_the_receiver_sums_processes_and_retires_the_silent_ones() -> None:
    clock = [1000.0]
    receiver = EpisodeEventReceiver(Celery("r", broker="memory://"), retire_after=600,
                                    clock=lambda: clock[0])
    one, two = Tally(), Tally()
    one.add(0.01)
    two.add(0.02)
    two.add(0.03)
    receiver.on_event({"hostname": "w1", "process": "a", "tallies": {"o": one.to_json()}})
    receiver.on_event({"hostname": "w1", "process": "b", "tallies": {"o": two.to_json()}})
    receiver.on_event({"hostname": "w1", "process": "c", "tallies": "garbage"})
    totals, processes = receiver.totals()
    assert totals["o"].count == 3 and processes == 2
    clock[0] += 601  # ten minutes without a word from either
    totals, processes = receiver.totals()
    assert totals["o"].count == 3 and processes == 0  # retired, still counted


def test_worker_metrics_follow_task_events_unless_set() -> None:
    assert worker_metrics_enabled(None, True) and not worker_metrics_enabled(None, False)
    assert worker_metrics_enabled(True, False) and not worker_metrics_enabled(False, True)


def test_tallies_travel_as_celery_events_through_redis() -> None:
    require("redis")
    app = Celery(f"metrics-events-{uuid.uuid4().hex[:6]}", broker=f"{REDIS_URL}/14")
    receiver = EpisodeEventReceiver(app).start()
    try:
        assert receiver.connected.wait(10)
        sender = EpisodeEventSender(app, interval=3600)  # flushed by hand below
        outcome = EpisodeOutcome("iid", "shop.order", COMPLETED, 0.004)
        sender(outcome)
        sender(outcome)
        deadline = time.monotonic() + 10
        while receiver.totals()[0].get("shop.order", Tally()).count < 2:
            assert time.monotonic() < deadline, "no durable-episodes event arrived"
            sender.flush()  # (events sent before the receiver's queue is bound are lost)
            time.sleep(0.2)
        totals, processes = receiver.totals()
        assert processes == 1 and totals["shop.order"].seconds == pytest.approx(0.008)
        sender.stop()
    finally:
        receiver.stop()

