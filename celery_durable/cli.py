"""``celery -A proj durable ...``: inspect and steer orchestrations from the command line.

A click group registered through the ``celery.commands`` entry point, as Celery's own
subcommands are: Celery loads the app given with ``-A`` and hands it over in ``ctx.obj.app``;
the commands work on the `Durable` bound to that app. Tables are for people, ``--json`` for
scripts. Every error is one line on stderr (``Error: ...``) and a non-zero exit status.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click
from celery import Celery
from celery.bin.base import CeleryCommand, CLIContext, handle_preload_options

from celery_durable.client import check_instance_id
from celery_durable.engine.actions import is_local_event
from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import OrchestrationNotFoundError
from celery_durable.runtime.durable import Durable, durable_of
from celery_durable.runtime.recovery import RecoveryReport, recover
from celery_durable.store import InstanceRecord
from celery_durable.terminal import printable

F = TypeVar("F", bound=Callable[..., Any])

#: most characters of a payload shown in a table cell or a ``show`` line
SUMMARY_WIDTH = 60
_STATUSES = ", ".join(status.value for status in OrchestrationStatus)


# -- plumbing --------------------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    """The exception as one readable line (database and broker errors say which)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("sqlalchemy"):
        orig = getattr(exc, "orig", None)
        detail = " ".join(str(orig).split()) if orig is not None else text.split(" [SQL:")[0]
        return f"the store failed ({type(exc).__name__}): {detail}"
    if module.startswith(("kombu", "amqp", "redis")) or isinstance(exc, ConnectionError):
        return f"the broker failed ({type(exc).__name__}): {text}"
    if isinstance(exc, (ValueError, LookupError, TypeError, TimeoutError)) or \
            module.startswith("celery_durable"):
        return text
    return f"{type(exc).__name__}: {text}"


def _errors_as_one_line(fn: F) -> F:
    """Turn any exception of a command into ``Error: <one line>`` and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError as exc:
            if not _from_output(exc):
                raise click.ClickException(_one_line(exc)) from None
            _quiet_stdout()
            raise click.exceptions.Exit(0) from None
        except Exception as exc:
            raise click.ClickException(_one_line(exc)) from None

    return wrapper  # type: ignore[return-value]


def _from_output(exc: BaseException) -> bool:
    """Whether ``exc`` was raised writing this command's output (the reader of a pipe, such as
    ``| head -1``, went away), not talking to the broker or the store."""
    return any(frame.f_code.co_name in {"echo", "secho"} and "click" in frame.f_code.co_filename
               for frame, _ in traceback.walk_tb(exc.__traceback__))


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader has gone, and Python's flush at exit must not
    fail again (the Python docs' advice for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _app(ctx: click.Context) -> Celery:
    obj = ctx.find_object(CLIContext)
    if obj is not None and obj.app is not None:
        app: Celery = obj.app
        return app
    from celery import current_app

    return current_app._get_current_object()


def _durable(ctx: click.Context) -> Durable:
    """The `Durable` of the ``-A`` app (its ``include``/``imports`` modules imported first)."""
    app = _app(ctx)
    try:
        app.loader.import_default_modules()
    except Exception as exc:
        raise click.ClickException(f"cannot import the modules of app {app.main!r}: "
                                   f"{_one_line(exc)}") from None
    found = durable_of(app)
    if found is None:
        raise click.ClickException(
            f"the Celery app {app.main or '(unnamed)'!r} has no Durable: create one with "
            "Durable(app) in the module you pass to -A (celery -A proj durable ...)")
    return found


def _parse_json(value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.ClickException(f"{option} must be JSON (e.g. '{{\"total\": 10}}', '3' or "
                                   f"'\"text\"'), got {value!r}: {exc}") from None


def _statuses(values: Sequence[str]) -> list[str] | None:
    if not values:
        return None
    found: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().upper()
            if name not in OrchestrationStatus.__members__:
                raise click.ClickException(f"unknown status {part.strip()!r}; use one of "
                                           f"{_STATUSES}")
            found.append(name)
    return found


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _summary(value: Any, width: int = SUMMARY_WIDTH) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           default=str)
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[:width - 3] + "..."


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                        strict=True)).rstrip())


def instance_json(record: InstanceRecord) -> dict[str, Any]:
    """An instance as ``--json`` prints it (payloads as stored)."""
    return {
        "instance_id": record.instance_id, "name": record.name, "version": record.version,
        "status": record.status.value, "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "completed_at": record.completed_at.isoformat() if record.completed_at else None,
        "start_at": record.start_at.isoformat() if record.start_at else None,
        "parent_instance_id": record.parent_instance_id, "execution_id": record.execution_id,
        "generation": record.generation, "input": record.input, "output": record.output,
        "custom_status": record.custom_status, "failure": record.failure, "tags": record.tags,
    }


def _failure_line(failure: dict[str, Any] | None) -> str:
    if not failure:
        return "-"
    kind, message = failure.get("error_type"), failure.get("message")
    return f"{kind}: {message}" if kind else str(message)


def _show_instance(record: InstanceRecord, inbox: int | None = None) -> None:
    lines = [
        ("instance id", record.instance_id), ("name", record.name),
        ("version", record.version or "-"), ("status", record.status.value),
        ("created", _time(record.created_at)), ("updated", _time(record.updated_at)),
        ("completed", _time(record.completed_at)),
    ]
    if record.start_at is not None:
        lines.append(("start at", _time(record.start_at)))
    lines += [
        ("parent", record.parent_instance_id or "-"),
        ("execution", f"{record.execution_id} (generation {record.generation})"),
        ("tags", _summary(record.tags)), ("input", _summary(record.input)),
        ("output", _summary(record.output)), ("custom status", _summary(record.custom_status)),
        ("failure", _failure_line(record.failure)),
    ]
    if inbox is not None:
        lines.append(("inbox", f"{inbox} event(s) waiting"))
    width = max(len(label) for label, _ in lines) + 1
    for label, value in lines:
        click.echo(f"{(label + ':').ljust(width)}  {printable(value)}")


def _record(durable: Durable, instance_id: str) -> InstanceRecord:
    record = durable.store.get_instance(check_instance_id(instance_id))
    if record is None:
        raise OrchestrationNotFoundError(f"no orchestration instance has id {instance_id!r}; "
                                         "check the id (celery durable list)")
    return record


def _command(group: click.Group, name: str | None = None
             ) -> Callable[[Callable[..., Any]], click.Command]:
    """``@_command(durable)``: a subcommand whose errors print one line."""

    def decorate(fn: Callable[..., Any]) -> click.Command:
        wrapped = click.pass_context(_errors_as_one_line(fn))
        return group.command(name=name, cls=CeleryCommand)(wrapped)

    return decorate


# -- the commands ----------------------------------------------------------------------------------

@click.group(name="durable")
@click.pass_context
@handle_preload_options
def durable(ctx: click.Context) -> None:
    """Durable orchestrations: list, show, start, steer, purge, recover.

    Runs against the Durable of the app given with -A: celery -A proj durable list
    """


@_command(durable, "list")
@click.option("--status", "status", multiple=True,
              help=f"Only instances with this status (repeat or comma-separate): {_STATUSES}.")
@click.option("--name", help="Only instances of this orchestrator.")
@click.option("--limit", type=int, default=100, show_default=True,
              help="Most instances to print (1 to 10000).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of instances).")
def list_instances(ctx: click.Context, status: tuple[str, ...], name: str | None, limit: int,
                   as_json: bool) -> None:
    """List instances, oldest first."""
    if not 1 <= limit <= 10_000:
        raise click.ClickException(f"--limit must be from 1 to 10000, got {limit}")
    store = _durable(ctx).store
    records = store.query_instances(statuses=_statuses(status), name=name, limit=limit + 1)
    more = len(records) > limit
    records = records[:limit]
    if as_json:
        _echo_json([instance_json(record) for record in records])
    elif records:
        _table(["INSTANCE ID", "NAME", "VERSION", "STATUS", "CREATED (UTC)", "UPDATED (UTC)"],
               [[r.instance_id, r.name, r.version or "-", r.status.value, _time(r.created_at),
                 _time(r.updated_at)] for r in records])
    else:
        click.echo("No orchestration instances match.")
    if more:
        click.echo(f"(more instances match; showing the first {limit}: raise --limit or filter "
                   "with --status/--name)", err=True)


@_command(durable, "show")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """Show one instance: status, input, output, failure."""
    found = _durable(ctx)
    record = _record(found, instance_id)
    inbox = found.store.inbox_size(record.instance_id)
    if as_json:
        _echo_json({**instance_json(record), "inbox": inbox})
    else:
        _show_instance(record, inbox)


@_command(durable, "history")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of events).")
def history(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """Show the history of an instance's current execution."""
    events: list[HistoryEvent] = _durable(ctx).client.get_orchestration_history(instance_id)
    if as_json:
        _echo_json([event.to_json() for event in events])
        return
    _table(["SEQ", "KIND", "TASK ID", "NAME", "TIME (UTC)", "DATA"],
           [[str(e.seq), e.kind, "-" if e.task_id is None else str(e.task_id),
             (e.name or "-") + (" (local)" if is_local_event(e.kind, e.data) else ""),
             _time(e.timestamp), _summary(e.data)] for e in events])


@_command(durable, "start")
@click.argument("name")
@click.option("--input", "input_json", default=None, metavar="JSON",
              help="The orchestrator's input, as JSON.")
@click.option("--id", "instance_id", default=None, help="Instance id (default: a new uuid).")
@click.option("--version", default=None, help="Version to schedule the instance with.")
@click.option("--wait", type=float, default=None, metavar="SECONDS",
              help="Wait up to SECONDS for the instance to end and print its final state; "
                   "exit status 1 unless it COMPLETED.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(ctx: click.Context, name: str, input_json: str | None, instance_id: str | None,
          version: str | None, wait: float | None, as_json: bool) -> None:
    """Start orchestrator NAME; print the new instance's id."""
    data = _parse_json(input_json, "--input")
    if wait is not None and wait <= 0:
        raise click.ClickException(f"--wait must be a positive number of seconds, got {wait}")
    found = _durable(ctx)
    iid = found.client.schedule_new_orchestration(name, input=data, instance_id=instance_id,
                                                  version=version)
    if wait is None:
        if as_json:
            _echo_json({"instance_id": iid})
        else:
            click.echo(iid)
        return
    found.client.wait_for_orchestration_completion(iid, timeout=wait)
    record = _record(found, iid)
    if as_json:
        _echo_json(instance_json(record))
    else:
        _show_instance(record)
    if record.status is not OrchestrationStatus.COMPLETED:
        detail = f": {_failure_line(record.failure)}" if record.failure else ""
        raise click.ClickException(f"orchestration {iid!r} ended {record.status.value}{detail}")


@_command(durable, "raise")
@click.argument("instance_id")
@click.argument("event")
@click.option("--data", "data_json", default=None, metavar="JSON",
              help="The event's data, as JSON.")
def raise_event(ctx: click.Context, instance_id: str, event: str,
                data_json: str | None) -> None:
    """Raise external EVENT to an instance."""
    data = _parse_json(data_json, "--data")
    _durable(ctx).client.raise_orchestration_event(instance_id, event, data=data)
    click.echo(f"Raised {event!r} to {instance_id}.")


@_command(durable, "suspend")
@click.argument("instance_id")
@click.option("--reason", default=None, help="Why (recorded in the history).")
@click.option("--cancel-running", is_flag=True, default=False,
              help="Kill its running activities (Celery revoke); sent again on resume.")
def suspend(ctx: click.Context, instance_id: str, reason: str | None,
            cancel_running: bool) -> None:
    """Suspend an instance (it buffers events until resumed)."""
    _durable(ctx).client.suspend_orchestration(instance_id, reason=reason,
                                               cancel_running=cancel_running)
    click.echo(f"Asked {instance_id} to suspend.")


@_command(durable, "resume")
@click.argument("instance_id")
@click.option("--reason", default=None, help="Why (recorded in the history).")
def resume(ctx: click.Context, instance_id: str, reason: str | None) -> None:
    """Resume a suspended instance."""
    _durable(ctx).client.resume_orchestration(instance_id, reason=reason)
    click.echo(f"Asked {instance_id} to resume.")


@_command(durable, "terminate")
@click.argument("instance_id")
@click.option("--output", "output_json", default=None, metavar="JSON",
              help="The instance's output, as JSON.")
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Terminate its running sub-orchestrations too.")
@click.option("--cancel-running", is_flag=True, default=False,
              help="Also kill the activities it has running (Celery revoke, terminate=True).")
def terminate(ctx: click.Context, instance_id: str, output_json: str | None,
              recursive: bool, cancel_running: bool) -> None:
    """Terminate an instance now (the work it sent is revoked)."""
    output = _parse_json(output_json, "--output")
    _durable(ctx).client.terminate_orchestration(instance_id, output=output, recursive=recursive,
                                                 cancel_running=cancel_running)
    click.echo(f"Asked {instance_id} to terminate.")


@_command(durable, "recover")
@click.option("--dry-run", is_flag=True, help="Count what would be sent; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def recover_command(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Re-dispatch what running instances wait on (after the broker lost its messages)."""
    report = recover(_durable(ctx), dry_run=dry_run)
    if as_json:
        _echo_json(report.to_json())
    else:
        _print_report(report)
    for problem in report.problems:
        click.echo(f"Problem: {problem}", err=True)
    if report.problems:
        raise click.ClickException(f"{len(report.problems)} item(s) could not be re-dispatched "
                                   "(see above)")


def _print_report(report: RecoveryReport) -> None:
    verb = "Would send" if report.dry_run else "Sent"
    click.echo(f"{report.instances} running instance(s) examined. {verb}:")
    rows = [("episode wake-ups", report.woken), ("activity messages", report.activities),
            ("timer messages", report.timers), ("outbox messages", report.outbox)]
    for label, count in rows:
        click.echo(f"  {label:<18} {count}")
    click.echo(f"Sub-orchestrations waited on: {report.sub_orchestrations} (recovered as "
               "instances of their own).")
    if report.timers_left_to_sweeper or report.starts_left_to_sweeper:
        click.echo(f"Left to the sweeper (beyond the timer horizon): "
                   f"{report.timers_left_to_sweeper} timer(s), "
                   f"{report.starts_left_to_sweeper} delayed start(s).")
    if report.dry_run:
        click.echo("Dry run: nothing was sent.")


# ``replay`` and ``export`` live in a module of their own; importing it adds them to the group
import celery_durable.cli_entities  # noqa: E402,F401  (entities, entity)
import celery_durable.cli_manage  # noqa: E402,F401  (restart, rewind)
import celery_durable.cli_purge  # noqa: E402,F401
import celery_durable.cli_replay  # noqa: E402,F401
import celery_durable.cli_schedules  # noqa: E402,F401  (schedules, schedule ...)
from celery_durable.metrics.command import metrics as _metrics  # noqa: E402
from celery_durable.ui.command import ui as _ui  # noqa: E402  (the dashboard, its own module)

durable.add_command(_ui)
durable.add_command(_metrics)
