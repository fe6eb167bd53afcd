"""``celery durable entities`` and ``celery durable entity NAME KEY``: durable entities from the
command line (importing this module adds the commands to the ``durable`` group)."""

from __future__ import annotations

from typing import Any

import click

from celery_durable.cli import _command, _durable, _echo_json, _summary, _table, _time, durable
from celery_durable.engine.entity_id import EntityInstanceId
from celery_durable.entity import EntityMetadata
from celery_durable.errors import DurableError
from celery_durable.terminal import printable


def entity_json(metadata: EntityMetadata) -> dict[str, Any]:
    return {"id": str(metadata.id), "name": metadata.id.name, "key": metadata.id.key,
            "state": metadata.state, "locked_by": metadata.locked_by,
            "backlog_queue_size": metadata.backlog_queue_size,
            "last_modified": metadata.last_modified.isoformat()}


@_command(durable, "entities")
@click.option("--name", help="Only entities of this name.")
@click.option("--key-prefix", "key_prefix", help="Only keys starting with this (with --name).")
@click.option("--limit", type=int, default=100, show_default=True,
              help="Most entities to print (1 to 10000).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of entities).")
def entities(ctx: click.Context, name: str | None, key_prefix: str | None, limit: int,
             as_json: bool) -> None:
    """List durable entities (with state or a lock), by id."""
    if not 1 <= limit <= 10_000:
        raise click.ClickException(f"--limit must be from 1 to 10000, got {limit}")
    if key_prefix and not name:
        raise click.ClickException("--key-prefix needs --name: keys are per entity name")
    page = _durable(ctx).client.get_all_entities(name=name, key_prefix=key_prefix, limit=limit)
    if as_json:
        _echo_json([entity_json(m) for m in page.items])
    elif page.items:
        _table(["ENTITY ID", "STATE", "LOCKED BY", "BACKLOG", "MODIFIED (UTC)"],
               [[str(m.id), _summary(m.state), m.locked_by or "-", str(m.backlog_queue_size),
                 _time(m.last_modified)] for m in page.items])
    else:
        click.echo("No entities match.")
    if page.continuation_token is not None:
        click.echo(f"(more entities match; showing the first {limit}: raise --limit or filter "
                   "with --name/--key-prefix)", err=True)


@_command(durable, "entity")
@click.argument("name")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def entity(ctx: click.Context, name: str, key: str, as_json: bool) -> None:
    """Show one entity: state, lock holder, backlog."""
    entity_id = EntityInstanceId(name, key)
    metadata = _durable(ctx).client.get_entity(entity_id)
    if metadata is None:
        raise DurableError(f"entity {entity_id} does not exist (it has no state); list the "
                           "entities with: celery durable entities")
    if as_json:
        _echo_json(entity_json(metadata))
        return
    lines = [("entity", str(metadata.id)), ("state", _summary(metadata.state, 2000)),
             ("locked by", metadata.locked_by or "-"),
             ("backlog", f"{metadata.backlog_queue_size} operation(s) waiting"),
             ("modified", _time(metadata.last_modified))]
    width = max(len(label) for label, _ in lines) + 1
    for label, value in lines:
        click.echo(f"{(label + ':').ljust(width)}  {printable(value)}")
