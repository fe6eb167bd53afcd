"""Test helpers for users' orchestrators: an in-process environment and a replay check.

- `DurableTestEnv` (the ``durable_env`` pytest fixture): orchestrations run in the test's process
  on the real engine and store, activities run eagerly, time is a test clock.
- `replay`: check that a stored history (``celery durable export``) still replays on the code.

Names load on first use, so that the pytest plugin (`celery_durable.testing.plugin`) costs
nothing to load in test sessions that never use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery_durable.testing.clock import TestClock
    from celery_durable.testing.env import DurableTestEnv
    from celery_durable.testing.mocks import ActivityCall, ActivityMock
    from celery_durable.testing.replay_check import (
        HistoryExport,
        ReplayResult,
        check,
        export_history,
        load_histories,
        replay,
    )

_WHERE = {
    "ActivityCall": "mocks", "ActivityMock": "mocks", "DurableTestEnv": "env", "TestClock": "clock",
    "HistoryExport": "replay_check", "ReplayResult": "replay_check",
    "check": "replay_check", "export_history": "replay_check", "load_histories": "replay_check",
    "replay": "replay_check",
}

__all__ = [
    "ActivityCall", "ActivityMock", "DurableTestEnv", "HistoryExport", "ReplayResult",
    "TestClock", "check", "export_history", "load_histories", "replay",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
