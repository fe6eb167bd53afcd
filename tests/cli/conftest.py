"""Fixtures of the CLI tests (helpers are in ``durable_cli_helpers``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from durable_cli_helpers import Harness, make_app, run_worker


@pytest.fixture(scope="module")
def cli_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """sqlite-filesystem: an app, its Durable and a running worker, for one test module.

    One embedded worker at a time per process: Celery's ``fast_trace_task`` runs tasks from the
    registry of the last worker set up (``celery.app.trace._localized``), and stopping a worker
    sets ``celery.worker.state.should_terminate``, which ends every worker thread. So this
    worker lives for one module, and a test that starts its own worker does so outside it.
    """
    with contextlib.ExitStack() as stack:
        tmp = tmp_path_factory.mktemp("cli")
        app, found = make_app("sqlite-filesystem", tmp, stack, durable_timer_horizon=2.0)
        worker = run_worker(stack, app)
        harness = Harness("sqlite-filesystem", app, found, worker)
        harness.tmp = tmp  # type: ignore[attr-defined]
        yield harness
