"""``celery -A proj durable purge``: delete one ended instance (``purge ID``), or every ended
instance matching filters (``purge --status FAILED --created-before 30d``), in small batches.
The command joins the ``durable`` group of `cli`."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import click

from celery_durable.cli import _command, _durable, _statuses, durable
from celery_durable.runtime.retention import checked_statuses

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str | None, option: str, now: datetime) -> datetime | None:
    """An ISO 8601 date or time (UTC unless it says otherwise), or an age back from ``now``:
    ``30d``, ``12h``, ``90m``, ``45s``, ``2w``."""
    if value is None:
        return None
    text = value.strip()
    age = _AGE.fullmatch(text)
    if age:
        return now - timedelta(**{_UNITS[age.group(2)]: float(age.group(1))})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.ClickException(
            f"{option} must be an ISO 8601 time (2026-01-31 or 2026-01-31T12:00:00+00:00) or "
            f"an age such as 30d, 12h or 90m, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@_command(durable, "purge")
@click.argument("instance_id", required=False)
@click.option("--status", "status", multiple=True,
              help="With no ID: purge instances with this end status (repeat or "
                   "comma-separate): COMPLETED, FAILED, TERMINATED; all three if left out.")
@click.option("--created-before", "created_before", metavar="TIME",
              help="With no ID: only instances created before TIME (ISO 8601, or an age: 30d).")
@click.option("--created-after", "created_after", metavar="TIME",
              help="With no ID: only instances created after TIME (ISO 8601, or an age).")
@click.option("--recursive/--no-recursive", default=None,
              help="Purge the ended sub-orchestrations too (default: yes for an ID, no for "
                   "filters, as durabletask's purge_orchestrations_by).")
@click.option("--dry-run", is_flag=True, help="With filters: count what would be purged.")
def purge(ctx: click.Context, instance_id: str | None, status: tuple[str, ...],
          created_before: str | None, created_after: str | None, recursive: bool | None,
          dry_run: bool) -> None:
    """Delete ended instances: one by ID, or all matching filters."""
    client = _durable(ctx).client
    filtered = bool(status or created_before or created_after)
    if instance_id is not None:
        if filtered or dry_run:
            raise click.ClickException("give an instance ID or filters (--status, "
                                       "--created-before, --created-after, --dry-run), not both")
        count = client.purge_orchestration(instance_id, recursive=recursive is not False)
        click.echo(f"Purged {count} instance(s).")
        return
    if not filtered:
        raise click.ClickException(
            "give an instance ID, or at least one filter: --status, --created-before or "
            "--created-after (e.g. durable purge --status COMPLETED --created-before 30d)")
    now = datetime.now(timezone.utc)
    statuses = checked_statuses(_statuses(status))
    before = parse_time(created_before, "--created-before", now)
    after = parse_time(created_after, "--created-after", now)
    if dry_run:
        counts = client.store.count_matching_by_status(created_from=after, created_to=before)
        total = sum(counts.get(s, 0) for s in statuses)
        click.echo(f"Would purge {total} instance(s) ({', '.join(statuses)}); "
                   f"sub-orchestrations not counted. Dry run: nothing was deleted.")
        return
    started = time.monotonic()
    count = client.purge_orchestrations_by(created_time_from=after, created_time_to=before,
                                           runtime_status=statuses, recursive=bool(recursive))
    click.echo(f"Purged {count} instance(s) in {time.monotonic() - started:.1f} s.")
