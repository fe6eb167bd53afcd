"""Settings read from the Celery app's configuration (``app.conf.durable_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery_durable.runtime.local_bounds import batch_bound, seconds_bound

DEFAULT_STORE_URL = "sqlite:///celery_durable.sqlite3"
#: the default of ``durable_max_payload_bytes``: 4 MiB
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class DurableSettings:
    """Every ``durable_*`` setting, with its default."""

    store_url: str = DEFAULT_STORE_URL
    #: timers due within this horizon go to the broker as ETA tasks; later ones wait in the store
    #: (well under Redis' visibility_timeout and RabbitMQ's consumer_timeout)
    timer_horizon: timedelta = timedelta(minutes=10)
    #: how often the sweeper looks for due timers, unpublished outbox rows and stranded inboxes
    sweep_interval: float = 5.0
    #: outbox rows / inbox rows older than this are taken as lost and re-published / re-woken
    recovery_grace: timedelta = timedelta(seconds=15)
    #: an activity scheduled this long ago (or a timer this far past due) with no completion is
    #: re-dispatched unless a live worker still holds its message (see `runtime.redispatch`)
    activity_redispatch_after: timedelta = timedelta(seconds=30)
    #: orchestrator states kept warm per worker process (bounded)
    state_cache_size: int = 1000
    #: queue of orchestration episodes (None: the app's default queue)
    episode_queue: str | None = None
    #: queue of timer messages (None: the episode queue's name + ".timers"; consumed by every
    #: worker that consumes an episode queue, see `runtime.timer_queue`)
    timer_queue: str | None = None
    #: run the sweeper inside every worker (a bootstep)
    sweeper_enabled: bool = True
    #: largest JSON (in bytes) of one payload: the client refuses larger inputs and event data,
    #: an activity result or orchestrator output, input or custom status over it fails the task
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    #: the client runs the episode an instance's start or event calls for in its own process,
    #: instead of sending it to a worker (one broker hop less; the client must import the
    #: orchestrators' code, which it does to schedule them)
    client_episodes: bool = False
    #: instances that ended longer ago than this are deleted by the sweeper (None: kept)
    retention: timedelta | None = None
    #: workers report their episodes for the metrics (None: when they send events, ``-E``)
    worker_metrics: bool | None = None
    #: local activities one episode runs before its commit, at most
    local_activity_batch: int = 20
    #: no local activity starts once the episode's batch has run this many seconds
    local_activity_batch_seconds: float = 2.0
    #: a local activity's retry delay up to this (within the batch's bound) is waited in-process
    local_activity_retry_wait_seconds: float = 1.0

    @classmethod
    def from_conf(cls, conf: Any, store_url: str | None = None) -> DurableSettings:
        def get(key: str, default: Any) -> Any:
            value = conf.get(f"durable_{key}")
            return default if value is None else value

        def seconds(key: str, default: timedelta) -> timedelta:
            value = get(key, default)
            return value if isinstance(value, timedelta) else timedelta(seconds=float(value))

        defaults = cls()
        return cls(
            store_url=store_url or get("store_url", defaults.store_url),
            timer_horizon=seconds("timer_horizon", defaults.timer_horizon),
            sweep_interval=float(get("sweep_interval", defaults.sweep_interval)),
            recovery_grace=seconds("recovery_grace", defaults.recovery_grace),
            activity_redispatch_after=seconds("activity_redispatch_after",
                                              defaults.activity_redispatch_after),
            state_cache_size=int(get("state_cache_size", defaults.state_cache_size)),
            episode_queue=get("episode_queue", None),
            timer_queue=get("timer_queue", None),
            sweeper_enabled=bool(get("sweeper_enabled", True)),
            max_payload_bytes=_positive_int("durable_max_payload_bytes",
                                            get("max_payload_bytes", defaults.max_payload_bytes)),
            client_episodes=bool(get("client_episodes", defaults.client_episodes)),
            retention=_retention(conf.get("durable_retention")),
            worker_metrics=get("worker_metrics", None),
            local_activity_batch=batch_bound(get("local_activity_batch",
                                                 defaults.local_activity_batch)),
            local_activity_batch_seconds=seconds_bound(
                "local_activity_batch_seconds",
                get("local_activity_batch_seconds", defaults.local_activity_batch_seconds)),
            local_activity_retry_wait_seconds=seconds_bound(
                "local_activity_retry_wait_seconds",
                get("local_activity_retry_wait_seconds",
                    defaults.local_activity_retry_wait_seconds)),
        )


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive int (bytes), got {value!r}")
    return value


def _retention(value: Any) -> timedelta | None:
    """``durable_retention``: a timedelta or seconds, positive; None keeps every instance."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("durable_retention must be a timedelta or a number of seconds "
                             f"(e.g. timedelta(days=30)), got {value!r}")
        value = timedelta(seconds=value)
    if value <= timedelta(0):
        raise ValueError(f"durable_retention must be positive, got {value!r}; leave it unset "
                         "(None) to keep every instance")
    return value
