"""``celery -A proj durable restart`` and ``rewind``: run an instance again, from the beginning
or from its failures. The commands join the ``durable`` group of `cli`."""

from __future__ import annotations

import click

from celery_durable.cli import _command, _durable, durable


@_command(durable, "restart")
@click.argument("instance_id")
@click.option("--new-id", is_flag=True, default=False,
              help="Run it under a new instance id (always so for an instance still running).")
def restart(ctx: click.Context, instance_id: str, new_id: bool) -> None:
    """Run an instance again from the beginning.

    With its input and version; an ended instance keeps its id (its history is replaced)
    unless --new-id is given."""
    target = _durable(ctx).client.restart_orchestration(
        instance_id, restart_with_new_instance_id=new_id)
    if target == instance_id:
        click.echo(f"Restarted {instance_id}.")
    else:
        click.echo(f"Restarted {instance_id} as {target}.")


@_command(durable, "rewind")
@click.argument("instance_id")
@click.option("--reason", default=None, help="Why (recorded in the history).")
def rewind(ctx: click.Context, instance_id: str, reason: str | None) -> None:
    """Run a FAILED instance again from its failures.

    The failed activities, Celery tasks and sub-orchestrations run again, what succeeded does
    not."""
    _durable(ctx).client.rewind_orchestration(instance_id, reason=reason)
    click.echo(f"Rewound {instance_id}; it runs again from its failures.")
