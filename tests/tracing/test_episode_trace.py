"""`EpisodeTrace` on its own, with the real SDK: what an episode stamps into its commit, and
what a failed episode leaves (one span with the error; nothing of what it would have
committed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("opentelemetry.sdk")

import span_files  # noqa: E402
from opentelemetry import trace  # noqa: E402

from celery_durable import tracing  # noqa: E402
from celery_durable.engine import history as h  # noqa: E402
from celery_durable.engine.status import OrchestrationStatus  # noqa: E402
from celery_durable.runtime import messages  # noqa: E402
from celery_durable.store import EpisodeCommit, InboxItem, NewInstance  # noqa: E402

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
INSTANCE = SimpleNamespace(instance_id="order-1", name="order", version="2")


def _started() -> tuple[h.HistoryEvent, dict[str, str]]:
    """A start kept by a traced client, and the client's span's carrier."""
    with trace.get_tracer("web").start_as_current_span("POST /orders"), \
            tracing.creating("order", "order-1", "2") as carrier:
        assert carrier is not None
        return tracing.keep_trace(h.execution_started("order", None, NOW), carrier), carrier


def _commit() -> EpisodeCommit:
    child = NewInstance(instance_id="order-1:pay", name="pay", parent_instance_id="order-1",
                        parent_task_id=3)
    next_start = h.execution_started("order", 2, NOW)
    commit = EpisodeCommit(status=OrchestrationStatus.RUNNING, outbox=[
        messages.timer_message("order-1", "e1", 4, NOW + timedelta(seconds=1), None),
        messages.episode_message("order-1:pay", "pay", None)])
    commit.children.append((child, [h.execution_started("pay", None, NOW)]))
    commit.notify.append(("order-1", InboxItem("start:e2", next_start, "e2")))
    return commit


def test_an_episode_stamps_what_it_sends_and_ends_after_its_commit(spans_path: Path) -> None:
    started, carrier = _started()
    commit = _commit()
    episode = tracing.EpisodeTrace()
    episode.begin(INSTANCE, "e1", started, commit, [])
    names = [s["name"] for s in span_files.read_spans(spans_path.parent)]
    assert "orchestration:order@(2)" not in names  # open until the commit
    for message in commit.outbox:
        traceparent = message["options"]["headers"]["traceparent"]
        assert traceparent.split("-")[1] == carrier["traceparent"].split("-")[1]
    child_start = commit.children[0][1][0]
    assert child_start.data["trace"]["traceparent"] != carrier["traceparent"]
    assert commit.notify[0][1].event.data["trace"] == carrier  # continue-as-new: same parent
    episode.end(commit)
    spans = {s["name"]: s for s in span_files.read_spans(spans_path.parent)}
    span = spans["orchestration:order@(2)"]
    assert span["parent_id"] == spans["create_orchestration:order@(2)"]["span_id"]
    assert span["attributes"]["durabletask.task.status"] == "RUNNING"
    assert spans["create_orchestration:pay"]["parent_id"] == span["span_id"]
    assert commit.outbox[0]["options"]["headers"]["traceparent"].split("-")[2] == \
        span["span_id"]


def test_a_failed_episode_leaves_one_error_span_and_nothing_it_would_have_committed(
        spans_path: Path) -> None:
    started, _ = _started()
    episode = tracing.EpisodeTrace()
    episode.begin(INSTANCE, "e1", started, _commit(), [])
    episode.failed(RuntimeError("the database went away"))
    episode.end(_commit())  # not reached in the runner; harmless if it were
    spans = span_files.read_spans(spans_path.parent)
    (span,) = [s for s in spans if s["name"] == "orchestration:order@(2)"]
    assert span["status"] == "ERROR"
    assert not [s for s in spans if s["name"] == "create_orchestration:pay"]


def test_an_untraced_instance_gets_nothing(spans_path: Path) -> None:
    commit = _commit()
    episode = tracing.EpisodeTrace()
    episode.begin(INSTANCE, "e1", h.execution_started("order", None, NOW), commit, [])
    episode.end(commit)
    assert all("traceparent" not in (m["options"].get("headers") or {}) for m in commit.outbox)
    assert "trace" not in commit.children[0][1][0].data
    assert span_files.read_spans(spans_path.parent) == []
