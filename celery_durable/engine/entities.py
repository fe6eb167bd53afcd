"""Entity code's side (pure): `EntityContext`, `DurableEntity` and running one operation.

An operation runs against the state as the previous operation left it; whatever it changes
(its state, the signals it sends, the orchestrations it starts) counts only if it returns: an
operation that raises leaves the state as it was and its caller gets the failure.
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from celery_durable.engine.context import name_of
from celery_durable.engine.entity_id import EntityInstanceId, entity_id_of
from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.history import utc
from celery_durable.errors import EntityOperationError
from celery_durable.ids import check_instance_id
from celery_durable.payload import from_json, input_annotation, to_json

S = TypeVar("S")
_UUID_NAMESPACE = uuid.UUID("5a0c2b7e-8f1d-4c55-9e2a-0d6b3f7c9e14")


@dataclass(frozen=True)
class SignalOut:
    """A signal an operation sends to an entity (``signal_time``: deliver it then)."""

    entity_id: str
    operation: str
    input: Any
    signal_time: datetime | None = None


@dataclass(frozen=True)
class StartOut:
    """An orchestration an operation starts."""

    name: str
    instance_id: str
    input: Any


@dataclass
class OperationOutcome:
    """What one operation did: its result or failure, and what it sends (empty if it failed)."""

    state: Any
    result: Any = None
    failure: FailureDetails | None = None
    signals: list[SignalOut] = field(default_factory=list)
    starts: list[StartOut] = field(default_factory=list)


class EntityContext:
    """What an entity operation sees: its entity's id, the operation, and the state."""

    def __init__(self, entity_id: EntityInstanceId, operation: str, state: Any, *,
                 seed: str = "", max_payload_bytes: int | None = None) -> None:
        self._entity_id = entity_id
        self._operation = operation
        self._state = state           # JSON form
        self._seed = seed             # makes started instance ids the same on a re-run
        self._limit = max_payload_bytes
        self._signals: list[SignalOut] = []
        self._starts: list[StartOut] = []

    @property
    def entity_id(self) -> EntityInstanceId:
        return self._entity_id

    @property
    def operation(self) -> str:
        return self._operation

    def get_state(self, type: Any = None, default: Any = None) -> Any:
        """The entity's state (``default`` if it has none), as ``type`` when given (a
        dataclass, named tuple or pydantic model is rebuilt from its JSON)."""
        if self._state is None:
            return default
        return from_json(self._state, type)

    def set_state(self, value: Any) -> None:
        """Replace the entity's state (JSON; ``None`` deletes the entity)."""
        self._state = to_json(value, f"state of entity {self._entity_id}", limit=self._limit)

    def signal_entity(self, entity_id: Any, operation: str, input: Any = None,
                      signal_time: datetime | None = None) -> None:
        """Send ``operation`` to an entity (this one too) once this operation has succeeded;
        with ``signal_time``, delivered at that time."""
        target = str(entity_id_of(entity_id))
        if not isinstance(operation, str) or not operation:
            raise ValueError(f"an entity operation is a non-empty string, got {operation!r}")
        payload = to_json(input, f"input of operation {operation!r} of entity {target}",
                          limit=self._limit)
        self._signals.append(SignalOut(target, operation, payload,
                                       None if signal_time is None else utc(signal_time)))

    def schedule_new_orchestration(self, orchestrator: Any, input: Any = None, *,
                                   instance_id: str | None = None) -> str:
        """Start an orchestration once this operation has succeeded; returns its instance id."""
        name = name_of(orchestrator, "orchestrator")
        payload = to_json(input, f"input of orchestrator {name!r}", limit=self._limit)
        if instance_id is None:
            seed = f"{self._entity_id}|{self._seed}|{len(self._starts)}"
            instance_id = uuid.uuid5(_UUID_NAMESPACE, seed).hex
        check_instance_id(instance_id)
        self._starts.append(StartOut(name, instance_id, payload))
        return instance_id


class DurableEntity:
    """Base class of class-based entities: each public method is an operation taking the
    operation's input (or nothing); ``delete`` removes the entity."""

    entity_context: EntityContext

    def _initialize_entity_context(self, context: EntityContext) -> None:
        self.entity_context = context

    def get_state(self, type: Any = None, default: Any = None) -> Any:
        return self.entity_context.get_state(type, default)

    def set_state(self, value: Any) -> None:
        self.entity_context.set_state(value)

    def signal_entity(self, entity_id: Any, operation: str, input: Any = None,
                      signal_time: datetime | None = None) -> None:
        self.entity_context.signal_entity(entity_id, operation, input, signal_time)

    def schedule_new_orchestration(self, orchestrator: Any, input: Any = None, *,
                                   instance_id: str | None = None) -> str:
        return self.entity_context.schedule_new_orchestration(orchestrator, input,
                                                              instance_id=instance_id)

    def delete(self, input: Any = None) -> None:
        """Remove the entity (its state becomes None)."""
        self.set_state(None)


_NOT_OPERATIONS = frozenset(name for name in vars(DurableEntity) if name != "delete")


def invoke(target: Any, ctx: EntityContext, input: Any) -> Any:
    """Run ``ctx.operation`` on ``target``: a function ``fn(ctx, input)`` or a `DurableEntity`
    subclass (a new object per operation, whose method of that name runs)."""
    if isinstance(target, type) and issubclass(target, DurableEntity):
        operation = ctx.operation
        method = getattr(target, operation, None) \
            if not operation.startswith("_") and operation not in _NOT_OPERATIONS else None
        if not callable(method):
            public = sorted(n for n in dir(target) if not n.startswith("_")
                            and n not in _NOT_OPERATIONS and callable(getattr(target, n)))
            raise EntityOperationError(
                f"entity {ctx.entity_id.name!r} ({target.__name__}) has no operation "
                f"{operation!r}; its operations are {', '.join(public)}")
        obj = target()
        obj._initialize_entity_context(ctx)
        params = [p for p in inspect.signature(method).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) < 2:
            return getattr(obj, operation)()
        return getattr(obj, operation)(from_json(input, input_annotation(method)))
    takes_input = len(inspect.signature(target).parameters) >= 2
    if not takes_input:
        return target(ctx)
    return target(ctx, from_json(input, input_annotation(target)))


def run_operation(target: Any, entity_id: EntityInstanceId, state: Any, operation: str,
                  input: Any, *, seed: str = "",
                  max_payload_bytes: int | None = None) -> OperationOutcome:
    """Run one operation on ``state`` (JSON); see `OperationOutcome`."""
    ctx = EntityContext(entity_id, operation, state, seed=seed,
                        max_payload_bytes=max_payload_bytes)
    try:
        result = to_json(invoke(target, ctx, input),
                         f"result of operation {operation!r} of entity {entity_id}",
                         limit=max_payload_bytes)
    except Exception as exc:  # noqa: BLE001 - user code: any exception fails the operation
        return OperationOutcome(state, failure=FailureDetails.from_exception(exc))
    return OperationOutcome(ctx._state, result, None, ctx._signals, ctx._starts)
