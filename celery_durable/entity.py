"""Durable entities' public side: the ``@entity`` decorator, its registry, `EntityMetadata`.

An entity is a small durable object: ``@entity`` on a function ``fn(ctx: EntityContext,
input)`` (``ctx.operation`` says which operation runs) or on a `DurableEntity` subclass (its
public methods are the operations). Entity names are case-insensitive (stored lower-cased), as
durabletask's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery_durable.engine.entities import DurableEntity
from celery_durable.engine.entity_id import EntityInstanceId
from celery_durable.errors import InvalidNameError
from celery_durable.payload import from_json


@dataclass(frozen=True)
class EntityDef:
    """A registered entity: its code (a function or a `DurableEntity` subclass), its name and
    the Celery queue its episodes go to (None: the durable episode queue)."""

    target: Any
    name: str
    queue: str | None = None


#: every ``@entity`` of the process, by (lower-cased) name
ENTITIES: dict[str, EntityDef] = {}


def entity(target: Any = None, *, name: str | None = None, queue: str | None = None) -> Any:
    """Declare an entity: ``@entity``, ``@entity(name="counter", queue="entities")``.

    On a function ``fn(ctx, input)`` or on a `DurableEntity` subclass; the default name is the
    function's or the class's, lower-cased. Returns the target unchanged (with
    ``__durable_entity_name__`` set)."""
    def register(obj: Any) -> Any:
        is_class = isinstance(obj, type)
        if is_class and not issubclass(obj, DurableEntity):
            raise TypeError(f"@entity on a class needs a DurableEntity subclass, got {obj!r}")
        if not is_class and not (callable(obj) and inspect.isfunction(obj)):
            raise TypeError(f"@entity decorates a function fn(ctx, input) or a DurableEntity "
                            f"subclass, got {obj!r}")
        entity_name = (name or obj.__name__).lower()
        if not entity_name or "@" in entity_name or len(entity_name) > 128:
            raise InvalidNameError(f"an entity name is 1 to 128 characters without '@', got "
                                   f"{entity_name!r}")
        ENTITIES[entity_name] = EntityDef(obj, entity_name, queue)
        obj.__durable_entity_name__ = entity_name
        return obj

    if target is None:
        return register
    return register(target)


def entity_definition(name: str) -> EntityDef | None:
    return ENTITIES.get(name.lower())


@dataclass(frozen=True)
class EntityMetadata:
    """What the store knows of an entity: ``id``, ``last_modified``, ``locked_by`` (the
    orchestration holding its lock, or None), ``backlog_queue_size`` (requests waiting in its
    inbox) and its state (`get_state`; None when read with ``include_state=False``)."""

    id: EntityInstanceId
    last_modified: datetime
    locked_by: str | None
    backlog_queue_size: int
    includes_state: bool
    state: Any = None

    def get_state(self, type: Any = None) -> Any:
        """The state (JSON), as ``type`` when given (dataclass, named tuple, pydantic model)."""
        return None if self.state is None else from_json(self.state, type)


@dataclass(frozen=True)
class CleanEntityStorageResult:
    """What `DurableClient.clean_entity_storage` did."""

    empty_entities_removed: int
    orphaned_locks_released: int


def name_of_entity(target: Any) -> Callable[..., Any] | str:
    return getattr(target, "__durable_entity_name__", target)
