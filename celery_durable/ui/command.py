"""``celery -A proj durable ui``: serve the dashboard of the app's `Durable`."""

from __future__ import annotations

import click
from celery.bin.base import CeleryCommand

#: what the command says when the ``ui`` extra is not installed
MISSING_EXTRA = ("the dashboard needs the ui extra (Tornado is not installed): "
                 "pip install 'celery-durable[ui]'")


@click.command(name="ui", cls=CeleryCommand)
@click.option("--port", type=click.IntRange(1, 65535), default=5566, show_default=True,
              help="Port to listen on.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--basic-auth", "basic_auth", default=None, metavar="USER:PASSWORD",
              envvar="DURABLE_UI_BASIC_AUTH",
              help="Refuse every request without these credentials "
                   "(or set DURABLE_UI_BASIC_AUTH).")
@click.option("--flower-url", "flower_url", default=None, metavar="URL",
              envvar="DURABLE_UI_FLOWER_URL",
              help="Flower's address, to link activity runs to their Celery task there "
                   "(or set DURABLE_UI_FLOWER_URL).")
@click.option("--refresh", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds between the pages' automatic refreshes.")
@click.option("--url-prefix", "prefix", default="", metavar="PATH",
              envvar="DURABLE_UI_URL_PREFIX",
              help="Serve under this path, behind a proxy that forwards /PATH/... unchanged "
                   "(as Flower's --url_prefix; or set DURABLE_UI_URL_PREFIX).")
@click.pass_context
def ui(ctx: click.Context, port: int, address: str, basic_auth: str | None,
       flower_url: str | None, refresh: float, prefix: str) -> None:
    """Serve the web dashboard (needs the ui extra)."""
    from celery_durable.cli import _durable

    try:
        import tornado  # noqa: F401  (the ui extra)
    except ImportError:
        raise click.ClickException(MISSING_EXTRA) from None
    from celery_durable.ui.auth import BasicAuth
    from celery_durable.ui.dashboard import Dashboard
    from celery_durable.ui.server import serve, url_prefix

    try:
        auth = BasicAuth.parse(basic_auth) if basic_auth is not None else None
        prefix = url_prefix(prefix)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if flower_url is not None and not flower_url.startswith(("http://", "https://")):
        raise click.ClickException(f"--flower-url must start with http:// or https://, "
                                   f"got {flower_url!r}")
    dashboard = Dashboard(_durable(ctx), flower_url=flower_url, refresh_seconds=refresh)
    if auth is None and address not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"Warning: the dashboard listens on {address} without --basic-auth: anyone "
                   "who reaches it can terminate and purge orchestrations.", err=True)

    def ready(url: str) -> None:
        click.echo(f"Dashboard of {dashboard.store!r} at {url}" +
                   (" (basic auth)" if auth else ""), err=True)

    try:
        serve(dashboard, address=address, port=port, auth=auth, ready=ready, prefix=prefix)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {address}:{port}: {exc.strerror or exc}"
                                   ) from None
