"""The bounds on the local activities one episode's commit may cover (see
`celery_durable.runtime.local_activities`), read from the app's ``durable_local_activity_*``
settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class LocalBounds:
    """How much local work one episode's commit may cover."""

    #: local activities run before one commit, at most
    batch: int = 20
    #: no local activity starts once the batch has run this many seconds
    seconds: float = 2.0
    #: a retry delay up to this many seconds (and within ``seconds``) is waited in-process
    retry_wait: float = 1.0


def bounds_from_conf(conf: Any) -> LocalBounds:
    """`LocalBounds` from ``durable_local_activity_batch``, ``..._batch_seconds`` and
    ``durable_local_activity_retry_wait_seconds``."""
    defaults = LocalBounds()

    def get(key: str, default: Any) -> Any:
        value = conf.get(f"durable_{key}")
        return default if value is None else value

    batch = get("local_activity_batch", defaults.batch)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"durable_local_activity_batch must be a positive int, got {batch!r}")
    seconds = _seconds("local_activity_batch_seconds",
                       get("local_activity_batch_seconds", defaults.seconds))
    retry_wait = _seconds("local_activity_retry_wait_seconds",
                          get("local_activity_retry_wait_seconds", defaults.retry_wait))
    return LocalBounds(batch, seconds, retry_wait)


def _seconds(key: str, value: Any) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"durable_{key} must be seconds (a number >= 0 or a timedelta), "
                         f"got {value!r}")
    return float(seconds)
