"""``durable_retention``: the sweeper deletes instances that ended longer ago than it, in bounded
batches, and nothing else; the setting's values."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from celery import Celery

from celery_durable import Durable, OrchestrationStatus
from celery_durable.engine import history as h
from celery_durable.runtime import retention
from celery_durable.runtime.settings import DurableSettings
from celery_durable.runtime.sweeper import sweep
from celery_durable.store import EpisodeCommit, NewInstance

COMPLETED, RUNNING = OrchestrationStatus.COMPLETED, OrchestrationStatus.RUNNING


def _make(durable: Durable, iid: str, status: OrchestrationStatus, ended: datetime) -> None:
    store = durable.store
    store.create_instance(NewInstance(iid, "o"), [h.execution_started("o", None, ended)])
    with store.episode(iid) as ep:
        assert ep is not None
        ep.commit(EpisodeCommit(status=status,
                                completed_at=ended if status is COMPLETED else None,
                                consumed_inbox_ids=[r.id for r in ep.inbox if r.id]))


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Durable]:
    app = Celery("retention-test", broker="memory://", set_as_current=False)
    app.conf.durable_retention = timedelta(days=30)
    found = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield found
    found.store.dispose()


def test_the_sweeper_purges_what_ended_before_the_retention(
        durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(timezone.utc)
    for i in range(7):
        _make(durable, f"old-{i}", COMPLETED, now - timedelta(days=31))
    _make(durable, "recent", COMPLETED, now - timedelta(days=29))
    _make(durable, "running", RUNNING, now - timedelta(days=300))
    monkeypatch.setattr(retention, "BATCH", 3)  # (smaller bounds than 10 batches of 500)
    monkeypatch.setattr(retention, "SWEEP_BATCHES", 2)
    assert sweep(durable, now).purged == 6  # two batches of three
    assert sweep(durable, now).purged == 1
    assert sweep(durable, now).purged == 0
    left = {r.instance_id for r in durable.store.query_instances()}
    assert left == {"recent", "running"}


def test_without_retention_nothing_is_purged(tmp_path: Path) -> None:
    app = Celery("no-retention", broker="memory://", set_as_current=False)
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    now = datetime.now(timezone.utc)
    _make(durable, "ancient", COMPLETED, now - timedelta(days=3000))
    assert sweep(durable, now).purged == 0
    assert durable.store.get_instance("ancient") is not None


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (86400, timedelta(days=1)), (0.5, timedelta(seconds=0.5)),
    (timedelta(days=30), timedelta(days=30))])
def test_retention_setting(value: object, expected: timedelta | None) -> None:
    assert DurableSettings.from_conf({"durable_retention": value}).retention == expected


@pytest.mark.parametrize(("value", "message"), [
    (-1, "must be positive"), (timedelta(0), "must be positive"),
    ("30d", "a timedelta or a number of seconds"), (True, "a timedelta")])
def test_bad_retention_setting(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DurableSettings.from_conf({"durable_retention": value})
