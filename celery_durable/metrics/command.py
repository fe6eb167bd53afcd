"""``celery -A proj durable metrics``: serve the Prometheus metrics of the app's `Durable`."""

from __future__ import annotations

import click
from celery.bin.base import CeleryCommand


@click.command(name="metrics", cls=CeleryCommand)
@click.option("--port", type=click.IntRange(0, 65535), default=9808, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--basic-auth", "basic_auth", default=None, metavar="USER:PASSWORD",
              envvar="DURABLE_METRICS_BASIC_AUTH",
              help="Refuse every request without these credentials "
                   "(or set DURABLE_METRICS_BASIC_AUTH).")
@click.option("--no-episodes", "no_episodes", is_flag=True,
              help="Serve the store's metrics only: do not consume the workers' episode "
                   "metrics from the broker.")
@click.pass_context
def metrics(ctx: click.Context, port: int, address: str, basic_auth: str | None,
            no_episodes: bool) -> None:
    """Serve Prometheus metrics at /metrics (needs the metrics extra)."""
    from celery_durable.cli import _durable
    from celery_durable.metrics.source import MISSING_EXTRA

    try:
        import prometheus_client  # noqa: F401  (the metrics extra)
    except ImportError:
        raise click.ClickException(MISSING_EXTRA) from None
    from celery_durable.metrics.exporter import serve
    from celery_durable.metrics.source import MetricsSource
    from celery_durable.ui.auth import BasicAuth

    try:
        auth = BasicAuth.parse(basic_auth) if basic_auth is not None else None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    durable = _durable(ctx)
    source = MetricsSource(durable, episodes=not no_episodes)

    def ready(url: str) -> None:
        click.echo(f"Metrics of {durable.store!r} at {url}" +
                   (" (basic auth)" if auth else ""), err=True)

    try:
        serve(source, address=address, port=port, auth=auth, ready=ready)
    except OSError as exc:
        source.close()
        raise click.ClickException(f"cannot listen on {address}:{port}: {exc.strerror or exc}"
                                   ) from None
