"""The workflow the tracing tests trace: activities (one after another and a fan-out), a timer,
a sub-orchestration and an external event; registered on whichever ``Durable`` `register` gets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

#: the spans one `ship_order` run must produce (besides the episodes'), by name
EXPECTED = {"activity:reserve": 1, "activity:price": 3, "activity:charge": 1,
            "orchestration:ship_order:timer": 1, "orchestration_event:approved": 1,
            "create_orchestration:ship_order": 1, "create_orchestration:charge_payment": 1}


def register(durable: Any) -> tuple[Any, Any]:
    """Register the activities and orchestrators on ``durable``; return (parent, child)."""

    @durable.activity(name="reserve")
    def reserve(ctx: Any, items: list[str]) -> list[str]:
        return sorted(items)

    @durable.activity(name="price")
    def price(ctx: Any, item: str) -> int:
        return len(item)

    @durable.activity(name="charge")
    def charge(ctx: Any, amount: int) -> str:
        return f"paid {amount}"

    @durable.orchestrator(name="charge_payment")
    def charge_payment(ctx: Any, amount: int) -> Any:
        return (yield ctx.call_activity("charge", input=amount))

    @durable.orchestrator(name="ship_order")
    def ship_order(ctx: Any, items: list[str]) -> Any:
        reserved = yield ctx.call_activity("reserve", input=items)
        prices = yield ctx.when_all([ctx.call_activity("price", input=item)
                                     for item in reserved])
        yield ctx.create_timer(timedelta(seconds=0.2))
        receipt = yield ctx.call_sub_orchestrator("charge_payment", input=sum(prices),
                                                 instance_id=f"{ctx.instance_id}:charge")
        approval = yield ctx.wait_for_external_event("approved")
        return {"receipt": receipt, "approved": approval}

    return ship_order, charge_payment
