"""Entities and orchestrations of the entity tests (in-process and on worker subprocesses)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery_durable import (
    DurableEntity,
    EntityContext,
    EntityInstanceId,
    TaskFailedError,
    entity,
    orchestrator,
)


@entity
def counter(ctx: EntityContext, input: Any) -> Any:
    """add N, get, reset; ``slow_add`` writes a line to the file named by ENT_MARKS (one per
    attempt) and sleeps before it adds, so that a test can kill the worker in the middle."""
    if ctx.operation == "add":
        ctx.set_state(ctx.get_state(int, 0) + int(input))
    elif ctx.operation == "slow_add":
        marks = Path(os.environ["ENT_MARKS"])
        with marks.open("a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(float(os.environ.get("ENT_SLOW", "3")))
        ctx.set_state(ctx.get_state(int, 0) + int(input))
    elif ctx.operation == "get":
        return ctx.get_state(int, 0)
    elif ctx.operation == "fail":
        ctx.set_state(-1)  # not kept: the operation raises
        raise ValueError("the counter refuses")
    elif ctx.operation == "delete":
        ctx.set_state(None)
    else:
        raise ValueError(f"unknown operation {ctx.operation}")
    return None


@entity(name="account")
class Account(DurableEntity):
    def deposit(self, amount: int) -> int:
        balance = self.get_state(int, 0) + amount
        if balance < 0:
            raise ValueError(f"balance would be {balance}")
        self.set_state(balance)
        return balance

    def balance(self) -> int:
        return self.get_state(int, 0)


def account(key: str) -> EntityInstanceId:
    return EntityInstanceId("account", key)


@orchestrator
def add_many(ctx: Any, spec: dict[str, Any]) -> int:
    """Call counter ``key`` ``times`` times (add 1 each), then signal one more add of 1."""
    target = EntityInstanceId("counter", spec["key"])
    for _ in range(spec["times"]):
        yield ctx.call_entity(target, "add", 1)
    ctx.signal_entity(target, "add", 1)
    return spec["times"] + 1


@orchestrator
def transfer(ctx: Any, spec: dict[str, Any]) -> int:
    """Move up to ``amount`` from account ``source`` to ``target`` inside a critical section
    (never below zero); returns what moved."""
    source, target = account(spec["source"]), account(spec["target"])
    with (yield ctx.lock_entities([source, target])):
        balance = yield ctx.call_entity(source, "balance")
        amount = min(spec["amount"], balance)
        if amount:
            yield ctx.call_entity(source, "deposit", -amount)
            yield ctx.call_entity(target, "deposit", amount)
    return amount


@orchestrator
def fail_inside_lock(ctx: Any, key: str) -> None:
    with (yield ctx.lock_entities([account(key)])):
        yield ctx.call_entity(account(key), "deposit", 1)
        raise RuntimeError("failed while holding the lock")


@orchestrator
def wait_inside_lock(ctx: Any, key: str) -> None:
    with (yield ctx.lock_entities([account(key)])):
        yield ctx.call_entity(account(key), "deposit", 1)
        yield ctx.wait_for_external_event("never")


@orchestrator
def call_failing(ctx: Any, key: str) -> dict[str, Any]:
    target = EntityInstanceId("counter", key)
    yield ctx.call_entity(target, "add", 5)
    try:
        yield ctx.call_entity(target, "fail")
    except TaskFailedError as exc:
        error = exc.details.error_type
    return {"error": error, "value": (yield ctx.call_entity(target, "get"))}


@entity(name="ledger")
class Ledger(DurableEntity):
    """An account that remembers which operations it applied: an operation applied twice would
    be counted in ``duplicates`` (the chaos test checks it stays 0)."""

    def deposit(self, entry: dict[str, Any]) -> int:
        state = self.get_state(dict, {"balance": 0, "ops": [], "duplicates": 0})
        if entry["op"] in state["ops"]:
            state["duplicates"] += 1
        else:
            if state["balance"] + entry["amount"] < 0:
                raise ValueError("the balance would go below zero")
            state["balance"] += entry["amount"]
            state["ops"].append(entry["op"])
        self.set_state(state)
        return state["balance"]

    def balance(self) -> int:
        return self.get_state(dict, {"balance": 0})["balance"]


@orchestrator
def ledger_transfer(ctx: Any, spec: dict[str, Any]) -> int:
    """`transfer` between ledgers, each deposit named by (instance, step)."""
    source = EntityInstanceId("ledger", spec["source"])
    target = EntityInstanceId("ledger", spec["target"])
    with (yield ctx.lock_entities([source, target])):
        amount = min(spec["amount"], (yield ctx.call_entity(source, "balance")))
        if amount:
            yield ctx.call_entity(source, "deposit", {"amount": -amount,
                                                      "op": f"{ctx.instance_id}:out"})
            yield ctx.call_entity(target, "deposit", {"amount": amount,
                                                      "op": f"{ctx.instance_id}:in"})
    return amount


@orchestrator
def call_unknown(ctx: Any, _: Any) -> str:
    try:
        yield ctx.call_entity(EntityInstanceId("no_such_entity", "x"), "get")
    except TaskFailedError as exc:
        return exc.details.error_type
    return "called"
