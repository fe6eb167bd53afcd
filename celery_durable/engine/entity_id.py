"""`EntityInstanceId`: the name and key of a durable entity (``@name@key``, as durabletask)."""

from __future__ import annotations

from typing import Any

from celery_durable.errors import InvalidInstanceIdError

#: longest entity id (``@name@key``): the store's instance id column holds 256 characters
MAX_ENTITY_ID = 256


class EntityInstanceId:
    """The id of one entity: its entity ``name`` (lower-cased, as durabletask) and its ``key``.

    ``str(EntityInstanceId("counter", "a"))`` is ``"@counter@a"``; ids order by that form, which
    is the canonical order in which `lock_entities` takes locks.
    """

    __slots__ = ("key", "name")

    def __init__(self, name: str, key: str) -> None:
        for what, value in (("name", name), ("key", key)):
            if not isinstance(value, str) or not value or "@" in value:
                raise InvalidInstanceIdError(
                    f"an entity {what} must be a non-empty string without '@', got {value!r}")
        if len(name) + len(key) + 2 > MAX_ENTITY_ID:
            raise InvalidInstanceIdError(
                f"entity id '@{name}@{key}' is longer than {MAX_ENTITY_ID} characters; use a "
                "shorter key")
        self.name = name.lower()
        self.key = key

    @property
    def entity(self) -> str:
        """The entity name (durabletask's attribute name)."""
        return self.name

    @staticmethod
    def parse(entity_id: str) -> EntityInstanceId:
        """``"@name@key"`` as an `EntityInstanceId`; `InvalidInstanceIdError` otherwise."""
        if not isinstance(entity_id, str) or not entity_id.startswith("@") or \
                entity_id.count("@") < 2:
            raise InvalidInstanceIdError(
                f"an entity id has the form '@name@key', got {entity_id!r}")
        _, name, key = entity_id.split("@", 2)
        return EntityInstanceId(name, key)

    def __str__(self) -> str:
        return f"@{self.name}@{self.key}"

    def __repr__(self) -> str:
        return f"EntityInstanceId({self.name!r}, {self.key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntityInstanceId) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: EntityInstanceId) -> bool:
        return str(self) < str(other)


def entity_id_of(value: Any) -> EntityInstanceId:
    """An `EntityInstanceId` given as one or as its ``@name@key`` string."""
    if isinstance(value, EntityInstanceId):
        return value
    if isinstance(value, str):
        return EntityInstanceId.parse(value)
    raise InvalidInstanceIdError(
        f"expected an EntityInstanceId(name, key) or an '@name@key' string, got {value!r}")


def is_entity_id(instance_id: str) -> bool:
    """Whether a store id names an entity (entities have ids of their own: ``@name@key``)."""
    return instance_id.startswith("@")
