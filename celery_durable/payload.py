"""Payloads: which user values may cross a durable boundary, and how they come back.

Dataclasses, named tuples and pydantic models are stored as JSON objects with the marker key
``"__durable_object__": true`` besides their fields. A user dict with that key is refused (not
escaped), so a stored object and a dict cannot be mistaken for each other.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import keyword
import math
import sys
import types
import typing
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Union

from celery_durable.errors import PayloadError, PayloadTooLargeError

__all__ = ["MARKER", "AttrObject", "dumps", "from_json", "input_annotation", "loads", "to_json"]

MARKER = "__durable_object__"
_TYPES = "JSON values (str, int, float, bool, None, list, dict), a dataclass, a named tuple"
_ACCEPTED = f"pass {_TYPES} or a pydantic model"
#: deepest nesting of lists and objects a payload may have (as most JSON parsers allow)
MAX_DEPTH = 128


class AttrObject:
    """A stored object read back without a type to build: read-only, fields as attributes."""

    def __init__(self, fields: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        self.__dict__.update(fields or {}, **kwargs)

    def __getattr__(self, name: str) -> Any:  # only reached for names that are not fields
        fields = ", ".join(self.__dict__) or "none"
        raise AttributeError(f"AttrObject has no field {name!r}; its fields are: {fields}")

    def __setattr__(self, name: str, value: Any = None) -> None:
        raise AttributeError("AttrObject is read-only; use to_dict() for a mutable copy")

    __delattr__ = __setattr__

    def __getitem__(self, name: str) -> Any:
        return self.__dict__[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.__dict__))

    def __len__(self) -> int:
        return len(self.__dict__)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AttrObject):
            return self.__dict__ == other.__dict__
        return NotImplemented

    def __repr__(self) -> str:
        fields = self.__dict__
        if all(k.isidentifier() and not keyword.iskeyword(k) for k in fields):
            return "AttrObject(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"
        return f"AttrObject({fields!r})"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a new plain dict; nested AttrObjects become plain dicts too."""
        return {k: _plain(v, objects=False) for k, v in self.__dict__.items()}


def to_json(value: Any, what: str = "value", *, limit: int | None = None) -> Any:
    """Return `value` as JSON data, or raise `PayloadError` naming `what` and the bad part;
    `PayloadTooLargeError` if ``limit`` is given and its JSON text is longer (in bytes)."""
    data = _to_json(value, what)
    if limit is not None:
        check_size(data, what, limit)
    return data


def check_size(data: Any, what: str, limit: int) -> None:
    """Raise `PayloadTooLargeError` if the JSON text of ``data`` is over ``limit`` bytes."""
    size = len(dumps(data))  # ASCII: non-ASCII characters are written as \u escapes
    if size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size:,} bytes of JSON, more than the {limit:,} allowed "
            "(durable_max_payload_bytes); store large data elsewhere and pass a reference")


def _to_json(value: Any, what: str) -> Any:
    active: set[int] = set()  # ids of the containers being encoded, to refuse cycles

    def refuse(path: str, problem: str, advice: str = _ACCEPTED) -> typing.NoReturn:
        raise PayloadError(f"{what} is not JSON-serialisable: value at {path} {problem}; {advice}")

    def fields(items: dict[Any, Any], path: str, depth: int,
               marked: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {MARKER: True} if marked else {}
        for key, item in items.items():
            if not isinstance(key, str):
                refuse(path, f"has the key {key!r}, which is {_describe(key)}", "use str keys")
            if key == MARKER:
                refuse(path, f"has the reserved key {MARKER!r}", "rename that key")
            out[str.__str__(key)] = encode(item, _key_path(path, key), depth + 1)
        return out

    def encode(value: Any, path: str, depth: int = 0) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return str.__str__(value)  # str subclasses and str enums as their plain text
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                refuse(path, f"is the float {value!r}", "pass a finite number or None")
            return float(value)
        if id(value) in active:
            refuse(path, "is a container that contains itself", "pass values without cycles")
        if depth >= MAX_DEPTH:
            refuse(path if len(path) < 80 else path[:40] + "..." + path[-30:],
                   f"is nested {MAX_DEPTH} lists or objects deep", f"pass values nested less "
                   f"than {MAX_DEPTH} levels (store deeper structures elsewhere)")
        active.add(id(value))
        try:
            if isinstance(value, AttrObject):
                return fields(value.__dict__, path, depth)
            if isinstance(value, tuple) and hasattr(value, "_fields") and hasattr(value, "_asdict"):
                return fields(value._asdict(), path, depth)
            if isinstance(value, (list, tuple)):
                return [encode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            if isinstance(value, dict):
                return fields(value, path, depth, marked=False)
            if isinstance(value, type):
                refuse(path, f"is the class {value.__qualname__}", "pass an instance of it")
            if dataclasses.is_dataclass(value):
                names = [f.name for f in dataclasses.fields(value)]
                return fields({n: getattr(value, n) for n in names}, path, depth)
            if callable(getattr(value, "model_dump", None)):
                try:
                    dumped = value.model_dump(mode="json")
                except Exception as exc:
                    refuse(path, f"is a model that cannot be dumped ({exc})")
                return fields(dumped, path, depth)
            refuse(path, f"is {_describe(value)}")
        finally:
            active.discard(id(value))

    return encode(value, "$")


def _describe(value: Any) -> str:
    """'a datetime', 'bytes', 'an instance of shop.Money': the type of `value` for messages."""
    kind = type(value)
    if kind is bytes:
        return "bytes"
    if kind.__module__.split(".")[0] in sys.stdlib_module_names:
        name = kind.__name__
        return f"{'an' if name[0] in 'aeioAEIO' else 'a'} {name}"
    return f"an instance of {kind.__module__}.{kind.__qualname__}"


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def from_json(value: Any, annotation: Any = None) -> Any:
    """Build `annotation` (a dataclass, named tuple, pydantic model, or a list, dict, tuple or
    Optional of one) from stored JSON, else return plain JSON with stored objects as `AttrObject`s.
    Raises `PayloadError` if a stored object does not fit its annotated type."""
    return _decode(value, annotation, "$")


def _decode(value: Any, ann: Any, path: str) -> Any:
    if value is None or ann is None or ann is Any:
        return _plain(value)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _decode(value, args[0], path)
    if origin is Union or origin is types.UnionType:
        options = [a for a in args if a is not type(None)]
        return _decode(value, options[0], path) if len(options) == 1 else _plain(value)
    if isinstance(value, list) and origin in (list, Sequence, tuple):
        item = args[0] if len(args) == 1 or args[1:] == (...,) else None  # tuple[A, B]: unbuilt
        items = [_decode(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if isinstance(value, dict) and MARKER not in value and origin in (dict, Mapping):
        item = args[1] if len(args) == 2 else None
        return {k: _decode(v, item, _key_path(path, k)) for k, v in value.items()}
    cls = origin if isinstance(origin, type) else ann
    if isinstance(cls, type):
        if dataclasses.is_dataclass(cls) and isinstance(value, dict):
            names = [f.name for f in dataclasses.fields(cls) if f.init]
            return _build(cls, names, value, path)
        if issubclass(cls, tuple) and hasattr(cls, "_fields") and isinstance(value, dict):
            return _build(cls, list(cls._fields), value, path)
        validate = getattr(cls, "model_validate", None)
        if callable(validate) and isinstance(value, dict):
            try:
                return validate(_plain(value, objects=False))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise _build_error(cls, path, exc) from exc
    return _plain(value)


def _build(cls: type, names: list[str], value: dict[str, Any], path: str) -> Any:
    hints = _field_hints(cls)
    kwargs = {n: _decode(value[n], hints.get(n), _key_path(path, n)) for n in names if n in value}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise _build_error(cls, path, exc) from exc


def _build_error(cls: type, path: str, exc: Exception) -> PayloadError:
    return PayloadError(
        f"cannot build {cls.__qualname__} from the stored value at {path}: {exc}; make the "
        "annotation match what was stored, or drop it to receive an AttrObject"
    )


@lru_cache(maxsize=512)
def _field_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fields come back unbuilt
        return {}


def _plain(value: Any, objects: bool = True) -> Any:
    """Stored JSON as plain values: marked objects as AttrObjects, or as dicts if not `objects`."""
    if isinstance(value, AttrObject) and not objects:
        value = value.__dict__
    if isinstance(value, dict):
        items = {k: _plain(v, objects) for k, v in value.items() if k != MARKER}
        return AttrObject(items) if objects and MARKER in value else items
    if isinstance(value, list):
        return [_plain(v, objects) for v in value]
    return value


def input_annotation(fn: Callable[..., Any]) -> Any:
    """The annotation of the second positional parameter of ``fn(ctx, input)``, or None.
    Kept per function once resolved (an activity's input is decoded at every run)."""
    if not isinstance(fn, types.FunctionType):  # e.g. an entity's bound method: not kept
        return _input_annotation(fn)[0]
    try:
        return _ANNOTATIONS[fn]
    except KeyError:
        pass
    annotation, resolved = _input_annotation(fn)
    if resolved:  # an unresolvable forward reference may resolve later
        _ANNOTATIONS[fn] = annotation
    return annotation


_ANNOTATIONS: weakref.WeakKeyDictionary[Callable[..., Any], Any] = weakref.WeakKeyDictionary()


def _input_annotation(fn: Callable[..., Any]) -> tuple[Any, bool]:
    """`input_annotation` of ``fn``, and whether it resolved."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    try:
        params = [p for p in inspect.signature(fn).parameters.values() if p.kind in positional]
    except (TypeError, ValueError):
        return None, True
    if len(params) < 2 or params[1].annotation is inspect.Parameter.empty:
        return None, True
    raw = params[1].annotation
    fallback = None if isinstance(raw, str) else raw
    try:
        return typing.get_type_hints(fn).get(params[1].name, fallback), True
    except Exception:  # unresolvable forward reference, or not a plain function
        return fallback, False


def dumps(value: Any) -> str:
    """Compact JSON text of a value `to_json` returned."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"cannot write JSON text ({exc}); pass what to_json returns") from exc


def loads(text: str | bytes) -> Any:
    """The value `dumps` wrote."""
    return json.loads(text)
