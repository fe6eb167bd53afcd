"""``/metrics`` on the dashboard's server: the exporter's scrape, behind the dashboard's auth."""

from __future__ import annotations

from collections import Counter

from durable_ui_helpers import BULK_NAMES, Setup
from prometheus_client.parser import text_string_to_metric_families

from celery_durable.metrics.collector import METRICS


def test_metrics_route_serves_the_store_metrics(setup: Setup) -> None:
    status, text = setup.request("GET", "/metrics")
    assert status == 200, text
    stored: Counter[str] = Counter()
    names = set()
    for family in text_string_to_metric_families(text):
        assert family.name in METRICS
        names.add(family.name)
        for sample in family.samples:
            if sample.name == "durable_instances" and sample.labels["orchestrator"] in BULK_NAMES:
                stored[sample.labels["status"]] += int(sample.value)
    assert {"durable_instances", "durable_orchestrations_completed", "durable_episodes",
            "durable_timer_lag_seconds"} <= names
    for status_name, count in setup.bulk_counts.items():
        assert stored[status_name] >= count  # (other tests add instances of their own)


def test_metrics_route_needs_the_dashboards_credentials(setup: Setup) -> None:
    status, _ = setup.request("GET", "/metrics", auth=None)
    assert status == 401
