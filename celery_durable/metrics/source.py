"""`MetricsSource`: one scrape in Prometheus' text format, for the exporter and the dashboard."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from celery_durable.metrics.collector import (
    DurableCollector,
    content_type,
    exposition,
    registry_of,
)
from celery_durable.metrics.episodes import EpisodeEventReceiver

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

#: what is said when prometheus_client (the ``metrics`` extra) is missing
MISSING_EXTRA = ("the metrics need the metrics extra (prometheus_client is not installed): "
                 "pip install 'celery-durable[metrics]'")


class MetricsSource:
    """The metrics of ``durable``'s store and, with ``episodes`` (the default), of the episodes
    its workers report through the broker (a receiving thread starts here)."""

    def __init__(self, durable: Durable, *, episodes: bool = True) -> None:
        self.receiver = EpisodeEventReceiver(durable.app).start() if episodes else None
        self.registry = registry_of(DurableCollector(durable.store, self.receiver))
        self.content_type = content_type()
        self._lock = threading.Lock()  # one scrape at a time: the store's load stays bounded

    def scrape(self) -> bytes:
        with self._lock:
            return exposition(self.registry)

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()


def metrics_source(durable: Durable) -> MetricsSource:
    """The process' source for ``durable`` (made on first use, then shared)."""
    with _sources_lock:
        found = _sources.get(id(durable))
        if found is None:
            found = _sources[id(durable)] = MetricsSource(durable)
        return found


_sources: dict[int, MetricsSource] = {}
_sources_lock = threading.Lock()
