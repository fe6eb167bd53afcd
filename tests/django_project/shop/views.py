"""``POST /orders/``: place an order and start its fulfilment in one transaction.

``?instance_id=`` names the instance; ``?fail=1`` makes the view fail after scheduling, inside
the transaction (which Django then rolls back)."""

from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from proj.celery import durable

from shop.models import Order
from shop.tasks import fulfil


@csrf_exempt
def place_order(request):
    with transaction.atomic():
        order = Order.objects.create(item=request.POST.get("item", "book"))
        instance_id = durable.client.schedule_new_orchestration(
            fulfil, input=order.pk, instance_id=request.GET.get("instance_id"))
        if request.GET.get("fail"):
            raise RuntimeError("the order failed after its orchestration was scheduled")
    return JsonResponse({"order": order.pk, "instance_id": instance_id})
