"""The Prometheus metrics of a `Durable`: a prometheus_client collector over the store (three
indexed statements per scrape, see `celery_durable.store.metrics`) and, when given, the episode
tallies the workers send (`celery_durable.metrics.episodes`).

Every metric is listed in `METRICS` (name, type, help); docs/operations.md lists them too, and
its dashboard and alert rules name only these (a test checks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from celery_durable.engine.status import OrchestrationStatus
from celery_durable.metrics.episodes import EpisodeEventReceiver

if TYPE_CHECKING:
    from celery_durable.store import Store

logger = logging.getLogger(__name__)

#: name (without the _total / _bucket suffixes Prometheus adds), type, help
METRICS: dict[str, tuple[str, str]] = {
    "durable_store_up": ("gauge", "1 when the last scrape read the store, 0 when it failed"),
    "durable_scrape_store_seconds": ("gauge", "Seconds this scrape spent reading the store"),
    "durable_instances": ("gauge", "Instances stored, by orchestrator and status"),
    "durable_orchestrations_started": (
        "counter", "Instances created (stored or purged since), by orchestrator"),
    "durable_orchestrations_completed": (
        "counter", "Instances that ended COMPLETED (stored or purged since), by orchestrator"),
    "durable_orchestrations_failed": (
        "counter", "Instances that ended FAILED (stored or purged since), by orchestrator"),
    "durable_orchestrations_terminated": (
        "counter", "Instances that ended TERMINATED (stored or purged since), by orchestrator"),
    "durable_oldest_pending_age_seconds": (
        "gauge", "Age of the oldest PENDING instance whose start is due (0: none): no worker "
                 "has run its first episode"),
    "durable_oldest_idle_running_age_seconds": (
        "gauge", "Seconds since the last episode of the longest-idle RUNNING instance that waits "
                 "on no timer and has no event in its inbox (0: none): it waits on an activity, a "
                 "sub-orchestration or an external event"),
    "durable_inbox_events": ("gauge", "Events in instances' inboxes, not yet consumed"),
    "durable_oldest_inbox_event_age_seconds": (
        "gauge", "Age of the oldest event not yet consumed by an episode (0: none)"),
    "durable_timers_due": ("gauge", "Durable timers due and not fired yet"),
    "durable_timer_lag_seconds": (
        "gauge", "How late the earliest due timer not fired yet is (0: none)"),
    "durable_activities_awaiting_redispatch": (
        "gauge", "Activities and timers the sweeper found overdue and re-sent, not completed"),
    "durable_outbox_messages": ("gauge", "Messages committed and not published yet"),
    "durable_oldest_outbox_message_age_seconds": (
        "gauge", "Age of the oldest message committed and not published yet (0: none)"),
    "durable_episodes": ("counter", "Episodes run by the workers, by orchestrator"),
    "durable_episode_duration_seconds": (
        "histogram", "Wall time of an episode (lock, replay, commit, publish), by orchestrator"),
    "durable_worker_processes_reporting": (
        "gauge", "Worker processes that sent episode metrics within the last 10 minutes"),
}

_ENDED = {"completed": OrchestrationStatus.COMPLETED.value,
          "failed": OrchestrationStatus.FAILED.value,
          "terminated": OrchestrationStatus.TERMINATED.value}


def _age(now: datetime, then: datetime | None) -> float:
    return 0.0 if then is None else max(0.0, (now - then).total_seconds())


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name][1], value=value)


class DurableCollector:
    """A prometheus_client collector of the store's metrics and, with ``episodes``, the
    workers' episode metrics."""

    def __init__(self, store: Store, episodes: EpisodeEventReceiver | None = None) -> None:
        self.store = store
        self.episodes = episodes

    def describe(self) -> list[Metric]:
        return []  # (no store query when registered)

    def collect(self) -> Iterator[Metric]:
        yield from self._store_metrics()
        if self.episodes is not None:
            yield from self._episode_metrics(self.episodes)

    def _store_metrics(self) -> Iterator[Metric]:
        now = datetime.now(timezone.utc)
        started = time.perf_counter()
        try:
            m = self.store.metrics(now)
        except Exception:
            logger.exception("reading the store's metrics failed")
            yield _gauge("durable_store_up", 0)
            return
        yield _gauge("durable_store_up", 1)
        yield _gauge("durable_scrape_store_seconds", time.perf_counter() - started)
        stored = GaugeMetricFamily("durable_instances", METRICS["durable_instances"][1],
                                   labels=["orchestrator", "status"])
        for (name, status), n in sorted(m.instances.items()):
            stored.add_metric([name, status], n)
        yield stored
        names = sorted({name for name, _ in m.instances} | {name for name, _ in m.purged})
        started_family = CounterMetricFamily(
            "durable_orchestrations_started", METRICS["durable_orchestrations_started"][1],
            labels=["orchestrator"])
        for name in names:
            started_family.add_metric([name], sum(
                n for (o, _), n in [*m.instances.items(), *m.purged.items()] if o == name))
        yield started_family
        for word, status in _ENDED.items():
            metric = f"durable_orchestrations_{word}"
            family = CounterMetricFamily(metric, METRICS[metric][1], labels=["orchestrator"])
            for name in names:
                family.add_metric([name], m.instances.get((name, status), 0)
                                  + m.purged.get((name, status), 0))
            yield family
        yield _gauge("durable_oldest_pending_age_seconds", _age(now, m.oldest_pending))
        yield _gauge("durable_oldest_idle_running_age_seconds",
                     _age(now, m.oldest_idle_running))
        yield _gauge("durable_inbox_events", m.inbox_rows)
        yield _gauge("durable_oldest_inbox_event_age_seconds", _age(now, m.oldest_inbox_row))
        yield _gauge("durable_timers_due", m.timers_due)
        yield _gauge("durable_timer_lag_seconds", _age(now, m.earliest_due_timer))
        yield _gauge("durable_activities_awaiting_redispatch", m.redispatch_waiting)
        yield _gauge("durable_outbox_messages", m.outbox_rows)
        yield _gauge("durable_oldest_outbox_message_age_seconds", _age(now, m.oldest_outbox_row))

    def _episode_metrics(self, episodes: EpisodeEventReceiver) -> Iterator[Metric]:
        totals, processes = episodes.totals()
        count = CounterMetricFamily("durable_episodes", METRICS["durable_episodes"][1],
                                    labels=["orchestrator"])
        duration = HistogramMetricFamily(
            "durable_episode_duration_seconds", METRICS["durable_episode_duration_seconds"][1],
            labels=["orchestrator"])
        for name, tally in sorted(totals.items()):
            count.add_metric([name], tally.count)
            duration.add_metric([name], buckets=tally.cumulative(), sum_value=tally.seconds)
        yield count
        yield duration
        yield _gauge("durable_worker_processes_reporting", processes)


def registry_of(collector: DurableCollector) -> CollectorRegistry:
    """A registry holding only ``collector`` (not the process' default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of ``registry`` (one scrape)."""
    return generate_latest(registry)


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)


