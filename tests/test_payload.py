"""Tests for celery_durable.payload: what to_json accepts and refuses, what from_json rebuilds."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import functools
import json
import math
import pickle
from typing import Annotated, Any, Generic, NamedTuple, Optional, TypeVar

import pytest

from celery_durable.errors import DurableError, PayloadError
from celery_durable.payload import (
    MARKER,
    AttrObject,
    dumps,
    from_json,
    input_annotation,
    loads,
    to_json,
)

T = TypeVar("T")


@dataclasses.dataclass
class Item:
    sku: str
    qty: int = 1


@dataclasses.dataclass(frozen=True)
class Address:
    city: str
    zip: str


@dataclasses.dataclass
class Order:
    id: int
    items: list[Item]
    ship_to: Address | None = None
    bill_to: Optional[Address] = None  # noqa: UP045 - the typing.Optional spelling on purpose
    by_sku: dict[str, Item] = dataclasses.field(default_factory=dict)
    extra: Any = None
    total: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.total = sum(item.qty for item in self.items)


@dataclasses.dataclass(kw_only=True)
class Flags:
    urgent: bool
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class Box(Generic[T]):
    content: T


@dataclasses.dataclass
class Unresolvable:
    other: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821


class Point(NamedTuple):
    x: int
    y: int


class Segment(NamedTuple):
    start: Point
    end: Point


PlainPair = collections.namedtuple("PlainPair", ["left", "right"])


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Plain(enum.Enum):
    A = 1


def roundtrip(value: Any, annotation: Any = None) -> Any:
    """to_json, then through JSON text (as the store does), then from_json."""
    return from_json(loads(dumps(to_json(value))), annotation)


# --- accepted values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        "",
        "héllo \u2603",
        [],
        {},
        [1, [2, [3]]],
        {"a": {"b": [None, {"c": "d"}]}},
    ],
)
def test_json_values_round_trip_unchanged(value: Any) -> None:
    assert to_json(value) == value
    assert roundtrip(value) == value


def test_tuples_become_lists() -> None:
    assert to_json((1, (2, 3))) == [1, [2, 3]]


def test_dict_subclasses_become_plain_dicts() -> None:
    value = collections.OrderedDict(b=1, a=2)
    out = to_json(value)
    assert type(out) is dict and list(out) == ["b", "a"]


def test_str_and_int_enums_are_stored_as_their_values() -> None:
    out = to_json({"color": Color.RED, "level": Level.HIGH})
    assert out == {"color": "red", "level": 3}
    assert type(out["color"]) is str and type(out["level"]) is int
    assert dumps(out) == '{"color":"red","level":3}'


def test_dataclass_is_stored_as_a_marked_object() -> None:
    assert to_json(Item("a", 2)) == {MARKER: True, "sku": "a", "qty": 2}


def test_dataclass_round_trips_with_its_annotation() -> None:
    order = Order(
        1,
        [Item("a", 2), Item("b")],
        ship_to=Address("Oslo", "0150"),
        bill_to=Address("Bergen", "5003"),
        by_sku={"a": Item("a", 2)},
        extra=Item("x"),
    )
    back = roundtrip(order, Order)
    assert isinstance(back.items[0], Item) and isinstance(back.ship_to, Address)
    assert isinstance(back.bill_to, Address) and isinstance(back.by_sku["a"], Item)
    assert back.extra == AttrObject(sku="x", qty=1)  # annotated Any: attribute access only
    assert back.total == 3  # init=False field recomputed by __post_init__
    assert dataclasses.replace(back, extra=Item("x")) == order


def test_optional_fields_may_be_none() -> None:
    back = roundtrip(Order(2, []), Order)
    assert back == Order(2, [])
    assert back.ship_to is None and back.bill_to is None


def test_dataclass_without_annotation_gives_attribute_access() -> None:
    back = roundtrip(Order(1, [Item("a", 2)], ship_to=Address("Oslo", "0150")))
    assert isinstance(back, AttrObject)
    assert back.id == 1
    assert back.items[0].sku == "a" and back.items[0].qty == 2  # field named like dict.items
    assert back.ship_to.city == "Oslo"
    assert back.by_sku == {}  # plain dicts stay dicts
    assert back["total"] == 2


def test_kw_only_dataclass_and_tuple_field() -> None:
    back = roundtrip(Flags(urgent=True, tags=("a", "b")), Flags)
    assert back == Flags(urgent=True, tags=("a", "b"))


def test_generic_dataclass_alias_builds_the_origin() -> None:
    back = roundtrip(Box(Item("a")), Box[Item])
    assert isinstance(back, Box) and back.content == AttrObject(sku="a", qty=1)


@pytest.mark.parametrize("annotation", [list[Item], Optional[list[Item]], list[Item] | None])  # noqa: UP045
def test_list_of_dataclasses(annotation: Any) -> None:
    assert roundtrip([Item("a"), Item("b", 3)], annotation) == [Item("a"), Item("b", 3)]


def test_tuple_and_dict_annotations() -> None:
    assert roundtrip((Item("a"), Item("b")), tuple[Item, ...]) == (Item("a"), Item("b"))
    assert roundtrip({"k": Item("a")}, dict[str, Item]) == {"k": Item("a")}
    mixed = roundtrip((1, Item("a")), tuple[int, Item])  # heterogeneous tuple: not built
    assert mixed == (1, AttrObject(sku="a", qty=1))


def test_annotated_and_optional_wrappers_are_unwrapped() -> None:
    assert roundtrip(Item("a"), Annotated[Item, "meta"]) == Item("a")
    assert roundtrip(Item("a"), Item | None) == Item("a")
    assert roundtrip(None, Item | None) is None


def test_ambiguous_union_returns_plain_values() -> None:
    assert roundtrip(Item("a"), Item | Address) == AttrObject(sku="a", qty=1)


def test_named_tuples_round_trip() -> None:
    seg = Segment(Point(0, 1), Point(2, 3))
    assert to_json(Point(1, 2)) == {MARKER: True, "x": 1, "y": 2}
    assert roundtrip(seg, Segment) == seg
    assert isinstance(roundtrip(seg, Segment).end, Point)
    assert roundtrip(PlainPair(1, [2]), PlainPair) == PlainPair(1, [2])
    plain = roundtrip(seg)
    assert plain.end.y == 3


@pytest.mark.parametrize("annotation", [None, Any, dict, int, "Item", T, AttrObject])
def test_unbuildable_annotations_give_plain_values(annotation: Any) -> None:
    back = roundtrip({"a": Item("x"), "b": [1]}, annotation)
    assert back == {"a": AttrObject(sku="x", qty=1), "b": [1]}


def test_value_that_does_not_fit_the_annotation_shape_stays_plain() -> None:
    assert roundtrip(5, Item) == 5
    assert roundtrip("x", list[Item]) == "x"


def test_extra_stored_fields_are_ignored() -> None:
    assert from_json({MARKER: True, "sku": "a", "qty": 1, "removed": 9}, Item) == Item("a")


def test_plain_dict_builds_annotated_dataclass() -> None:
    assert from_json({"sku": "a"}, Item) == Item("a")


def test_missing_required_field_is_a_payload_error_with_path() -> None:
    stored = to_json(Order(1, [Item("a")]))
    del stored["items"][0]["sku"]
    with pytest.raises(
        PayloadError, match=r"cannot build Item from the stored value at \$\.items\[0\]"
    ):
        from_json(stored, Order)


def test_unresolvable_field_hints_leave_fields_unbuilt() -> None:
    back = from_json({MARKER: True, "other": {MARKER: True, "sku": "a"}}, Unresolvable)
    assert isinstance(back, Unresolvable) and back.other == AttrObject(sku="a")


# --- pydantic -----------------------------------------------------------------------------


def test_pydantic_models_round_trip() -> None:
    BaseModel: Any = pytest.importorskip("pydantic").BaseModel

    class Line(BaseModel):
        sku: str
        at: datetime.datetime

    class Invoice(BaseModel):
        number: int
        lines: list[Line]

    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    invoice = Invoice(number=7, lines=[Line(sku="a", at=when)])
    stored = to_json(invoice, "input")
    assert stored[MARKER] is True and stored["lines"][0]["at"] == "2024-01-02T03:04:05Z"
    assert roundtrip(invoice, Invoice) == invoice
    assert roundtrip([invoice], list[Invoice]) == [invoice]
    assert roundtrip(invoice).lines[0]["sku"] == "a"  # nested models dump as plain dicts
    with pytest.raises(PayloadError, match=r"cannot build .*Invoice from the stored value at \$:"):
        from_json({MARKER: True, "number": "not a number", "lines": []}, Invoice)
    with pytest.raises(PayloadError, match="is the class .*Invoice;"):
        to_json(Invoice)


# --- AttrObject -----------------------------------------------------------------------------


def test_attr_object_behaviour() -> None:
    obj = AttrObject({"cost": 3, "items": [AttrObject(sku="a")]}, note="n")
    assert obj.cost == 3 and obj["note"] == "n" and obj.items[0].sku == "a"
    assert list(obj) == ["cost", "items", "note"] and len(obj) == 3 and "cost" in obj
    assert repr(AttrObject(cost=3)) == "AttrObject(cost=3)"
    assert repr(AttrObject({"a b": 1})) == "AttrObject({'a b': 1})"
    assert obj.to_dict() == {"cost": 3, "items": [{"sku": "a"}], "note": "n"}
    assert AttrObject(cost=3) == AttrObject(cost=3) != AttrObject(cost=4)
    assert AttrObject(cost=3) != {"cost": 3}
    with pytest.raises(AttributeError, match="has no field 'price'; its fields are: cost"):
        _ = AttrObject(cost=3).price
    with pytest.raises(AttributeError, match="read-only"):
        obj.cost = 4
    with pytest.raises(AttributeError, match="read-only"):
        del obj.cost
    with pytest.raises(TypeError):
        hash(obj)


def test_attr_object_fields_shadow_its_methods() -> None:
    obj = AttrObject(to_dict=1)
    assert obj.to_dict == 1
    assert AttrObject.to_dict(obj) == {"to_dict": 1}


def test_attr_object_round_trips_through_to_json() -> None:
    obj = roundtrip(Order(1, [Item("a")]))
    again = to_json(obj)
    assert again == to_json(Order(1, [Item("a")]))
    assert from_json(again) == obj
    assert from_json(again, Order) == Order(1, [Item("a")])


def test_attr_object_pickles_and_copies() -> None:
    obj = AttrObject(cost=3, nested=AttrObject(a=[1]))
    assert pickle.loads(pickle.dumps(obj)) == obj
    assert copy.deepcopy(obj) == obj and copy.copy(obj) == obj


# --- refusals -----------------------------------------------------------------------------


def test_refusal_message_names_what_path_type_and_remedy() -> None:
    value = {"items": [1, 2, {"when": datetime.datetime(2024, 1, 1)}]}
    with pytest.raises(PayloadError) as info:
        to_json(value, "input of activity 'charge'")
    assert str(info.value) == (
        "input of activity 'charge' is not JSON-serialisable: value at $.items[2].when is a "
        "datetime; pass JSON values (str, int, float, bool, None, list, dict), a dataclass, a "
        "named tuple or a pydantic model"
    )
    assert isinstance(info.value, DurableError) and isinstance(info.value, TypeError)


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        ({1}, "$", "is a set"),
        ({"a": frozenset()}, "$.a", "is a frozenset"),
        ([b"x"], "$[0]", "is bytes"),
        ({"a b": decimal.Decimal("1")}, '$["a b"]', "is a Decimal"),
        ({"d": datetime.date(2024, 1, 1)}, "$.d", "is a date"),
        ({"t": datetime.timedelta(1)}, "$.t", "is a timedelta"),
        (1 + 2j, "$", "is a complex"),
        ([math.nan], "$[0]", "is the float nan"),
        ({"x": math.inf}, "$.x", "is the float inf"),
        ({"x": -math.inf}, "$.x", "is the float -inf"),
        ({"a": {1: "x"}}, "$.a", "has the key 1, which is an int"),
        ({("k",): 1}, "$", "has the key ('k',), which is a tuple"),
        ([Opaque()], "$[0]", f"is an instance of {Opaque.__module__}.Opaque"),
        (Item("a", qty=Opaque()), "$.qty", "is an instance of"),  # type: ignore[arg-type]
        (Point(1, {2}), "$.y", "is a set"),  # type: ignore[arg-type]
        ([Item], "$[0]", "is the class Item"),
        ({"f": len}, "$.f", "is a builtin_function_or_method"),
        ({"g": (i for i in range(0))}, "$.g", "is a generator"),
        (Color, "$", "is the class Color"),
        (Plain.A, "$", "is an instance of"),
    ],
)
def test_refusals_name_the_path_and_type(value: Any, path: str, problem: str) -> None:
    with pytest.raises(PayloadError) as info:
        to_json(value, "output")
    message = str(info.value)
    assert message.startswith(f"output is not JSON-serialisable: value at {path} {problem}")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({MARKER: True, "sku": "a"}, "$"),
        ({"order": {MARKER: 1}}, "$.order"),
        (Order(1, [], extra={MARKER: True}), "$.extra"),
    ],
)
def test_user_dicts_may_not_use_the_marker_key(value: Any, path: str) -> None:
    with pytest.raises(PayloadError, match=rf"value at \{path} has the reserved key '{MARKER}'"):
        to_json(value)


def test_cycles_are_refused() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(PayloadError, match=r"value at \$\[1\] is a container that contains itself"):
        to_json(loop)
    shared = [1]
    assert to_json([shared, shared]) == [[1], [1]]  # the same object twice is not a cycle


def test_default_what_is_value() -> None:
    with pytest.raises(PayloadError, match=r"^value is not JSON-serialisable"):
        to_json({1, 2})


# --- input_annotation -----------------------------------------------------------------------


def orchestrate_order(ctx: Any, order: Order) -> None: ...


def orchestrate_optional(ctx: Any, order: Item | None) -> None: ...


def orchestrate_unannotated(ctx, order): ...


def orchestrate_no_input(ctx: Any) -> None: ...


def orchestrate_keyword_input(ctx: Any, *, order: Order) -> None: ...


def orchestrate_varargs(ctx: Any, *args: Order) -> None: ...


def orchestrate_forward_ref(ctx: Any, order: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821


def orchestrate_any(ctx: Any, order: Any) -> None: ...


class Handlers:
    def method(self, ctx: Any, item: Item) -> None: ...


def decorated(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (orchestrate_order, Order),
        (orchestrate_optional, Item | None),
        (orchestrate_unannotated, None),
        (orchestrate_no_input, None),
        (orchestrate_keyword_input, None),
        (orchestrate_varargs, None),
        (orchestrate_forward_ref, None),
        (orchestrate_any, Any),
        (Handlers().method, Item),
        (decorated(orchestrate_order), Order),
        (lambda ctx, order: None, None),
        (min, None),
    ],
)
def test_input_annotation(fn: Any, expected: Any) -> None:
    assert input_annotation(fn) == expected


def test_input_annotation_drives_from_json() -> None:
    stored = loads(dumps(to_json(Order(1, [Item("a")]))))
    assert from_json(stored, input_annotation(orchestrate_order)) == Order(1, [Item("a")])
    assert from_json(stored, input_annotation(orchestrate_unannotated)).items[0].sku == "a"


def test_input_annotation_keeps_a_real_annotation_when_hints_fail() -> None:
    def fn(ctx: Any, item: Item, other: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    fn.__annotations__["item"] = Item  # a real class; the other annotation stays unresolvable
    assert input_annotation(fn) is Item


# --- dumps / loads --------------------------------------------------------------------------


def test_dumps_is_compact_and_loads_inverts_it() -> None:
    value = to_json({"a": [1, 2.5, None, True], "b": Item("x")})
    text = dumps(value)
    assert text == '{"a":[1,2.5,null,true],"b":{"__durable_object__":true,"sku":"x","qty":1}}'
    assert loads(text) == value and loads(text.encode()) == value
    assert json.loads(text) == value


@pytest.mark.parametrize("value", [math.nan, {"a": datetime.date(2024, 1, 1)}])
def test_dumps_refuses_what_to_json_would_refuse(value: Any) -> None:
    with pytest.raises(PayloadError, match="pass what to_json returns"):
        dumps(value)
