"""The worker's part of the metrics: a bootstep that, in a worker sending events (``-E``, as
Flower needs) or with ``durable_worker_metrics = True``, makes every process of the worker report
its episodes (`celery_durable.metrics.episodes.EpisodeEventSender`). No prometheus_client is
needed on the workers."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from celery_durable.metrics.episodes import EpisodeEventSender


def worker_metrics_enabled(setting: bool | None, task_events: bool) -> bool:
    """``durable_worker_metrics`` when set, else whether the worker sends task events."""
    return bool(task_events) if setting is None else setting


class EpisodeMetricsStep(bootsteps.Step):
    """Adds the episode event sender to the worker's episode observers. It runs before the pool
    starts, so that prefork children inherit it (each then sends its own tally)."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        from celery_durable.runtime.durable import durable_of

        durable = durable_of(worker.app)
        if durable is None or not worker_metrics_enabled(
                durable.settings.worker_metrics, getattr(worker, "task_events", False)):
            return
        runner = durable.runner
        if not any(isinstance(o, EpisodeEventSender) for o in runner.observers):
            runner.observers.append(EpisodeEventSender(worker.app))
