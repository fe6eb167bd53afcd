"""``celery -A proj durable replay`` and ``export``: check stored histories against the code.

``replay`` replays histories (from the store, or from files ``export`` wrote) on the
orchestrators the ``-A`` app registers now, writing nothing, and exits with status 1 if any
diverges: run it in CI before a deploy. The commands join the ``durable`` group of `cli`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from celery_durable.cli import _command, _durable, _statuses, durable
from celery_durable.client import check_instance_id
from celery_durable.errors import OrchestrationNotFoundError, UnknownNameError
from celery_durable.runtime.durable import Durable
from celery_durable.testing.replay_check import (
    HistoryExport,
    ReplayResult,
    check,
    export_history,
    load_histories,
)

#: instances read from the store per query
_PAGE = 200


def _stored(found: Durable, statuses: list[str] | None, name: str | None,
            limit: int) -> Iterator[HistoryExport]:
    """Histories of the stored instances matching the filters, oldest first, at most ``limit``."""
    store, after, left = found.store, None, limit
    while left > 0:
        records = store.query_instances(statuses=statuses, name=name, limit=min(_PAGE, left),
                                        after=after)
        for record in records:
            try:
                events = store.get_history(record.instance_id)
            except OrchestrationNotFoundError:  # purged since the query
                continue
            yield HistoryExport(record.instance_id, record.name, events, record.version,
                                record.status.value)
        if len(records) < min(_PAGE, left):
            return
        left -= len(records)
        after = (records[-1].created_at, records[-1].instance_id)


def _from_files(paths: Sequence[str], name: str | None, limit: int) -> list[HistoryExport]:
    exports = []
    for path in paths:
        try:
            exports += load_histories(Path(path))
        except (OSError, ValueError, KeyError) as exc:
            raise click.ClickException(f"cannot read histories from {path}: {exc}") from None
    return [e for e in exports if name is None or e.name == name][:limit]


def _check(found: Durable, export: HistoryExport) -> ReplayResult:
    try:
        definition = found.registry.orchestrator(export.name)
    except UnknownNameError:
        return ReplayResult(export.instance_id, export.name, len(export.events),
                            f"no orchestrator is registered as {export.name!r} in this code "
                            "(renamed or removed?), so the instance cannot run on it")
    return check(export, definition.fn)


@_command(durable, "replay")
@click.option("--name", help="Only instances of this orchestrator.")
@click.option("--status", "status", multiple=True,
              help="Only instances with this status (repeat or comma-separate), e.g. running.")
@click.option("--limit", type=int, default=1000, show_default=True,
              help="Most histories to replay (1 to 1000000).")
@click.option("--from-file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Replay the histories in this file (written by 'durable export') instead of "
                   "the store's; repeatable.")
def replay_command(ctx: click.Context, name: str | None, status: tuple[str, ...], limit: int,
                   files: tuple[str, ...]) -> None:
    """Replay histories on this code; exit 1 on any divergence.

    Histories come from the store (or --from-file); they are replayed on the code that -A
    imports now, and nothing is written. Per orchestrator, prints how many histories replay cleanly and, for
    each that does not, the first diverging event: what history had and what the code did.
    """
    if not 1 <= limit <= 1_000_000:
        raise click.ClickException(f"--limit must be from 1 to 1000000, got {limit}")
    found = _durable(ctx)
    exports = _from_files(files, name, limit) if files else \
        _stored(found, _statuses(status), name, limit)
    by_name: dict[str, list[ReplayResult]] = defaultdict(list)
    for export in exports:
        by_name[export.name].append(_check(found, export))
    if not by_name:
        click.echo("No histories to replay.")
        return
    total = diverged = 0
    for orchestrator in sorted(by_name):
        results = by_name[orchestrator]
        bad = [r for r in results if not r.ok]
        total, diverged = total + len(results), diverged + len(bad)
        click.echo(f"{orchestrator}: {len(results) - len(bad)} of {len(results)} replay cleanly")
        for result in bad:
            click.echo(f"  {result.instance_id}: {result.divergence}")
    if diverged:
        raise click.ClickException(f"{diverged} of {total} histories diverge from the code: "
                                   "those instances would fail on it (guard the change with "
                                   "ctx.version_at_least)")
    click.echo("Every history replays cleanly.")


@_command(durable, "export")
@click.argument("instance_id")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default: standard output).")
def export_command(ctx: click.Context, instance_id: str, out: str | None) -> None:
    """Write an instance's history as JSON.

    For 'durable replay --from-file', or celery_durable.testing.replay in a unit test.
    """
    exported = export_history(_durable(ctx).store, check_instance_id(instance_id))
    text = json.dumps(exported.to_json(), indent=2)
    if out is None:
        click.echo(text)
        return
    Path(out).write_text(text + "\n")
    click.echo(f"Wrote {len(exported.events)} events of {exported.instance_id} to {out}.")
