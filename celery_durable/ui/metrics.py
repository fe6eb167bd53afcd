"""``GET /metrics`` on the dashboard's server: the same scrape as ``durable metrics`` serves
(behind the dashboard's basic auth when it has one); 501 without the ``metrics`` extra."""

from __future__ import annotations

from tornado.ioloop import IOLoop

from celery_durable.ui.handlers import Base


class MetricsPage(Base):
    """The Prometheus text format of the dashboard's `Durable` (and its workers' episodes)."""

    async def get(self) -> None:
        try:
            from celery_durable.metrics.source import metrics_source
        except ImportError:  # prometheus_client, imported by the source
            self.set_status(501)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("the metrics need the metrics extra (prometheus_client is not "
                        "installed): pip install 'celery-durable[metrics]'\n")
            return
        source = metrics_source(self.dashboard.durable)
        # a scrape reads the whole store's counts: the heavy pool, beside timelines
        executor = self.settings["executors"]["heavy"]
        body = await IOLoop.current().run_in_executor(executor, source.scrape)
        self.set_header("Content-Type", source.content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
