"""``celery -A proj durable schedules`` and ``durable schedule create|show|pause|resume|delete|
trigger``: manage durable schedules from the shell. The commands join the ``durable`` group of
`cli`."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from celery_durable.cli import _command, _durable, _echo_json, _parse_json, _table, _time, durable
from celery_durable.client_schedules import Schedule


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"{option} must be an ISO 8601 time (e.g. "
                                   f"2027-01-01T03:00:00+00:00), got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _show(s: Schedule) -> None:
    _table(["SCHEDULE ID", "ORCHESTRATOR", "WHEN", "OVERLAP", "PAUSED", "NEXT RUN (UTC)",
            "LAST RUN (UTC)", "RUNS", "MISSED", "OVERLAPPED"],
           [[s.schedule_id, s.orchestrator, s.every, s.overlap, "yes" if s.paused else "no",
             _time(s.next_run_at), _time(s.last_run_at), str(s.runs), str(s.missed),
             str(s.overlapped)]])


@_command(durable, "schedules")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of schedules).")
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List the durable schedules with their next and last runs."""
    found = _durable(ctx).client.list_schedules()
    if as_json:
        _echo_json([s.to_json() for s in found])
    elif found:
        _table(["SCHEDULE ID", "ORCHESTRATOR", "WHEN", "PAUSED", "NEXT RUN (UTC)",
                "LAST RUN (UTC)", "RUNS", "MISSED"],
               [[s.schedule_id, s.orchestrator, s.every, "yes" if s.paused else "no",
                 _time(s.next_run_at), _time(s.last_run_at), str(s.runs), str(s.missed)]
                for s in found])
    else:
        click.echo("No schedules. Create one: celery -A proj durable schedule create ID "
                   "ORCHESTRATOR --every 60")


@durable.group(name="schedule")
def schedule() -> None:
    """Create, show, pause, resume, trigger or delete one durable schedule."""


@_command(schedule, "create")
@click.argument("schedule_id")
@click.argument("orchestrator")
@click.option("--every", "interval", type=click.FloatRange(min=1), default=None,
              metavar="SECONDS", help="Tick every SECONDS (at least 1).")
@click.option("--cron", default=None,
              help="Five-field cron expression, UTC unless it starts with CRON_TZ=<zone>.")
@click.option("--input", "input_json", default=None, help="Input of every run, as JSON.")
@click.option("--start-at", default=None, help="First possible tick (ISO 8601; naive = UTC).")
@click.option("--end-at", default=None, help="Last possible tick (ISO 8601; naive = UTC).")
@click.option("--overlap", type=click.Choice(["skip", "allow", "buffer_one"]), default="skip",
              show_default=True, help="What a tick does while the previous run still runs.")
@click.option("--catchup-window", type=click.FloatRange(min=1), default=None,
              metavar="SECONDS", help="Ticks missed while no worker ran start if younger.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(ctx: click.Context, schedule_id: str, orchestrator: str, interval: float | None,
           cron: str | None, input_json: str | None, start_at: str | None, end_at: str | None,
           overlap: str, catchup_window: float | None, as_json: bool) -> None:
    """Create a schedule that starts ORCHESTRATOR (by name) at every tick."""
    created = _durable(ctx).client.create_schedule(
        schedule_id, orchestrator, input=_parse_json(input_json, "--input"), interval=interval,
        cron=cron, start_at=_when(start_at, "--start-at"), end_at=_when(end_at, "--end-at"),
        overlap=overlap, catchup_window=catchup_window)
    if as_json:
        _echo_json(created.to_json())
    else:
        _show(created)


def _one(name: str, help_text: str) -> None:
    """A ``schedule <name> SCHEDULE_ID`` command calling the client method of that name."""

    @_command(schedule, name)
    @click.argument("schedule_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def command(ctx: click.Context, schedule_id: str, as_json: bool) -> None:
        client = _durable(ctx).client
        if name == "show":
            found = client.get_schedule(schedule_id)
            if found is None:
                raise click.ClickException(f"no schedule has id {schedule_id!r}")
        elif name == "pause":
            found = client.pause_schedule(schedule_id)
        elif name == "resume":
            found = client.resume_schedule(schedule_id)
        elif name == "delete":
            client.delete_schedule(schedule_id)
            click.echo(f"Deleted schedule {schedule_id} (the instances it started stay).")
            return
        else:
            instance_id = client.trigger_schedule(schedule_id)
            click.echo(_echo_value(as_json, instance_id))
            return
        if as_json:
            _echo_json(found.to_json())
        else:
            _show(found)

    command.help = help_text


def _echo_value(as_json: bool, instance_id: str) -> str:
    return f'{{"instance_id": "{instance_id}"}}' if as_json else f"Started {instance_id}"


_one("show", "Show one schedule: definition, next and last runs, counters.")
_one("pause", "Stop firing the schedule's ticks (runs already started go on).")
_one("resume", "Fire the schedule again from its next tick on.")
_one("delete", "Delete the schedule (the instances it started stay).")
_one("trigger", "Start one run of the schedule now.")
