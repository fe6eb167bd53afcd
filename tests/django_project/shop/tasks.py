"""The shop's orchestration: an order is shipped (its activity uses the ORM)."""

from celery_durable import activity, orchestrator
from shop.models import Order


@activity(name="shop.ship")
def ship(ctx, order_id):
    Order.objects.filter(pk=order_id).update(status="shipped")
    return f"order {order_id} shipped"


@orchestrator(name="shop.fulfil")
def fulfil(ctx, order_id):
    return (yield ctx.call_activity(ship, input=order_id))
