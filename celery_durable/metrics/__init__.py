"""Prometheus metrics: ``celery -A proj durable metrics`` (a small exporter) and ``/metrics`` on
the ``durable ui`` server; the ``metrics`` extra (prometheus_client).

`source.MetricsSource` is what both serve: `collector.DurableCollector` over the store and the
episode tallies the workers send as Celery events (`episodes`). Only `command` is imported by
the CLI; prometheus_client is imported when a scrape source is made, so the package works
without the extra (the command then says how to install it).
"""
