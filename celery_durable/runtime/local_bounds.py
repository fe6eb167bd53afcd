"""Checks of the ``durable_local_activity_*`` settings: the bounds on the local activities one
episode's commit may cover (see `celery_durable.runtime.local_activities`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def batch_bound(value: Any) -> int:
    """``durable_local_activity_batch``: a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"durable_local_activity_batch must be a positive int (local "
                         f"activities in one commit), got {value!r}")
    return value


def seconds_bound(key: str, value: Any) -> float:
    """``durable_<key>``: seconds, a number >= 0 or a timedelta."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"durable_{key} must be seconds (a number >= 0 or a timedelta), "
                         f"got {value!r}")
    return float(seconds)
