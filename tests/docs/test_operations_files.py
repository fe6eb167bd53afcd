"""docs/operations/: the Grafana dashboard, the alert rules and the scrape job parse, and name
only metrics the exporter serves; docs/operations.md lists every metric."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from celery_durable.metrics.collector import METRICS

DOCS = Path(__file__).resolve().parents[2] / "docs"
FILES = DOCS / "operations"
SUFFIXES = {"gauge": [""], "counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
#: every series name the exporter can serve
SERIES = {name + suffix for name, (kind, _) in METRICS.items() for suffix in SUFFIXES[kind]}


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bdurable_[a-z_]+\b", expr))


def test_the_grafana_dashboard() -> None:
    dashboard: dict[str, Any] = json.loads((FILES / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["panels"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*map(names_in, exprs))
    assert used <= SERIES, used - SERIES
    served = {n for n in SERIES if not n.endswith(("_bucket", "_sum", "_count"))}
    assert served - used <= {"durable_episode_duration_seconds"}, served - used  # all shown
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_alert_rules() -> None:
    rules = yaml.safe_load((FILES / "prometheus-alerts.yml").read_text())
    alerts = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    for rule in alerts.values():
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule
        used = names_in(rule["expr"])
        assert used and used <= SERIES, (rule["alert"], used - SERIES)
        for text in rule["annotations"].values():
            assert names_in(text) <= SERIES
    # failure rate, stuck instances, timer lag
    assert {"DurableOrchestrationFailureRate", "DurableInstanceStuckPending",
            "DurableInboxStuck", "DurableInstanceIdle", "DurableTimerLag"} <= set(alerts)
    assert "durable_orchestrations_failed_total" in alerts[
        "DurableOrchestrationFailureRate"]["expr"]
    assert "durable_timer_lag_seconds" in alerts["DurableTimerLag"]["expr"]


def test_the_scrape_job() -> None:
    config = yaml.safe_load((FILES / "prometheus-scrape.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"][0].endswith(":9808")
    assert config["rule_files"] == ["prometheus-alerts.yml"]


def test_the_page_lists_every_metric() -> None:
    page = (DOCS / "operations.md").read_text()
    listed = set(re.findall(r"`(durable_[a-z_]+)`", page))
    for name, (kind, _) in METRICS.items():
        shown = name + ("_total" if kind == "counter" else "")
        assert shown in listed, f"{shown} is not in docs/operations.md"
