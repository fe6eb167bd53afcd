"""The structural-cost tests' Durable: the real runtime on PostgreSQL or SQLite, driven in this
process (see perf_driver)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from perf_driver import make_durable
from services import database

from celery_durable import Durable


@pytest.fixture(params=["postgresql", "sqlite"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Durable]:
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(database("postgresql", "durable_perf"))
        else:
            url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
        durable = make_durable(url, tmp_path)
        stack.callback(durable.store.dispose)
        stack.callback(durable.store.outbox_acks.flush)
        yield durable
