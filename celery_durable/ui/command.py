"""``celery -A proj durable ui``: serve the dashboard of the app's `Durable`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
from celery.bin.base import CeleryCommand

if TYPE_CHECKING:
    from celery_durable.ui.auth import BasicAuth

#: what the command says when the ``ui`` extra is not installed
MISSING_EXTRA = ("the dashboard needs the ui extra (Tornado is not installed): "
                 "pip install 'celery-durable[ui]'")


#: the environment variable that may hold USER:PASSWORD (not shown by ps, unlike an option)
AUTH_ENV = "DURABLE_UI_BASIC_AUTH"


@click.command(name="ui", cls=CeleryCommand)
@click.option("--port", type=click.IntRange(1, 65535), default=5566, show_default=True,
              help="Port to listen on.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 or ::: every interface, which needs "
                   "basic auth or --insecure-no-auth).")
@click.option("--basic-auth", "basic_auth", default=None, metavar="USER:PASSWORD",
              help="Refuse every request without these credentials. Visible to other users "
                   f"in ps: prefer {AUTH_ENV} or --basic-auth-file.")
@click.option("--basic-auth-file", "auth_file", default=None, metavar="PATH",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Read USER:PASSWORD from the first line of this file (e.g. a mounted "
                   "secret).")
@click.option("--insecure-no-auth", "insecure_no_auth", is_flag=True,
              help="Allow listening on an address other machines reach without basic auth "
                   "(anyone who reaches the dashboard can then terminate and purge).")
@click.option("--allowed-hosts", "allowed_hosts", default=None, metavar="HOSTS",
              envvar="DURABLE_UI_ALLOWED_HOSTS",
              help="Host names the dashboard answers to besides the address it listens on "
                   "and localhost (comma-separated; .example.com for subdomains): the public "
                   "name behind a proxy (or set DURABLE_UI_ALLOWED_HOSTS).")
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
       auth_file: Path | None, insecure_no_auth: bool, allowed_hosts: str | None,
       flower_url: str | None, refresh: float, prefix: str) -> None:
    """Serve the web dashboard (needs the ui extra)."""
    from celery_durable.cli import _durable

    try:
        import tornado  # noqa: F401  (the ui extra)
    except ImportError:
        raise click.ClickException(MISSING_EXTRA) from None
    from celery_durable.ui.dashboard import Dashboard
    from celery_durable.ui.security import HostPolicy, is_loopback, parse_allowed_hosts
    from celery_durable.ui.server import serve, url_prefix

    try:
        auth = _credentials(basic_auth, auth_file)
        prefix = url_prefix(prefix)
        hosts = HostPolicy.for_address(address, parse_allowed_hosts(allowed_hosts))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if flower_url is not None and not flower_url.startswith(("http://", "https://")):
        raise click.ClickException(f"--flower-url must start with http:// or https://, "
                                   f"got {flower_url!r}")
    if auth is None and not is_loopback(address):
        if not insecure_no_auth:
            raise click.ClickException(
                f"refusing to listen on {address} without basic auth: anyone who reaches it "
                f"could terminate and purge orchestrations. Set {AUTH_ENV}=USER:PASSWORD or "
                "--basic-auth-file PATH, or pass --insecure-no-auth if a proxy in front "
                "authenticates every request")
        click.echo(f"Warning: the dashboard listens on {address} without basic auth "
                   "(--insecure-no-auth): anyone who reaches it can terminate and purge "
                   "orchestrations.", err=True)
    if basic_auth is not None:
        click.echo(f"Note: --basic-auth is visible to every user of this machine in ps; set "
                   f"{AUTH_ENV} or use --basic-auth-file instead.", err=True)
    dashboard = Dashboard(_durable(ctx), flower_url=flower_url, refresh_seconds=refresh)

    def ready(url: str) -> None:
        click.echo(f"Dashboard of {dashboard.store!r} at {url}" +
                   (" (basic auth)" if auth else ""), err=True)

    try:
        serve(dashboard, address=address, port=port, auth=auth, ready=ready, prefix=prefix,
              hosts=hosts)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {address}:{port}: {exc.strerror or exc}"
                                   ) from None


def _credentials(option: str | None, path: Path | None) -> BasicAuth | None:
    """The credentials from ``--basic-auth``, ``--basic-auth-file`` or ``DURABLE_UI_BASIC_AUTH``
    (an option wins over the variable); None when none is given. ``ValueError`` for an empty
    or malformed value (the message never repeats the value: it may be a password)."""
    from celery_durable.ui.auth import BasicAuth

    if option is not None and path is not None:
        raise ValueError("give the credentials once: --basic-auth or --basic-auth-file")
    env = os.environ.get(AUTH_ENV) if option is None and path is None else None
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --basic-auth-file {str(path)!r}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        return BasicAuth.parse(lines[0].strip() if lines else "", f"--basic-auth-file {path}")
    if env is not None:
        return BasicAuth.parse(env, AUTH_ENV)
    return BasicAuth.parse(option, "--basic-auth") if option is not None else None
