"""The error messages that the docs quote, produced by the real code.

Run as ``python docs_messages.py`` in an empty folder; prints a JSON list of
``"<ExceptionType>: <message>"`` strings. It runs in a process of its own so that the registry
of its `Durable` holds only what it declares here (a message that lists registered names is
then the same as in the docs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from celery import Celery

from celery_durable import Durable
from celery_durable.engine import history as h
from celery_durable.engine.executor import execute
from celery_durable.engine.failure import FailureDetails

T0 = datetime(2025, 11, 25, 17, 10, tzinfo=timezone.utc)
found: list[str] = []


def raised(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any error is a message the docs may quote
        found.append(f"{type(exc).__name__}: {exc}")
    else:
        raise AssertionError(f"{call} raised nothing")


# -- the engine: replay that does not match, an activity that failed ------------------------------

def deployed(ctx: Any, order: Any) -> Any:
    yield ctx.call_activity("shop.reserve", input=order)
    yield ctx.call_activity("shop.charge", input=order)
    return "done"


def charge_replaced(ctx: Any, order: Any) -> Any:
    yield ctx.call_activity("shop.reserve", input=order)
    yield ctx.call_activity("shop.refund", input=order)
    return "done"


def charge_removed(ctx: Any, order: Any) -> Any:
    yield ctx.call_activity("shop.reserve", input=order)
    return "done"


def run(fn: Any, history: list[h.HistoryEvent], new: list[h.HistoryEvent]) -> Any:
    return execute(fn, "order-1", history, new, T0)


history: list[h.HistoryEvent] = []
for new in ([h.execution_started("process_order", {"total": 10}, T0)],
            [h.task_completed(0, "reserved", T0)], [h.task_completed(1, "charged", T0)]):
    history += run(deployed, history, new).new_events
for changed in (charge_replaced, charge_removed):
    result = run(changed, history, [])
    assert result.failure is not None, result
    found.append(str(result.failure))

failed = run(deployed, history[:4], [h.task_failed(1, FailureDetails("card declined",
                                                                    "ValueError"), T0)])
assert failed.failure is not None, failed
found.append(str(failed.failure))

# -- the client ------------------------------------------------------------------------------------

app = Celery("shop", broker="memory://", set_as_current=False)
durable = Durable(app, store_url="sqlite:///messages.sqlite3")


@durable.orchestrator
def process_order(ctx: Any, order: Any) -> Any:
    return (yield ctx.wait_for_external_event("approval"))


client = durable.client
# a name nobody registered is scheduled (clients need no code); the worker fails the instance
typo = client.schedule_new_orchestration("proces_order")
durable.runner.run(typo)
failure = client.get_orchestration_state(typo).failure_details
found.append(f"{failure.error_type}: {failure.message}")
raised(lambda: client.schedule_new_orchestration(" process_order"))
raised(lambda: client.schedule_new_orchestration(process_order, instance_id="order 42"))
raised(lambda: client.schedule_new_orchestration(process_order, instance_id="order\t42"))
client.schedule_new_orchestration(process_order, instance_id="order-42")
raised(lambda: client.schedule_new_orchestration(process_order, instance_id="order-42"))
raised(lambda: client.raise_orchestration_event("order-43", "approval"))
raised(lambda: client.schedule_new_orchestration(process_order, input="x" * 5_000_000))
raised(lambda: client.raise_orchestration_event("order-42", "approval\n"))
client.schedule_new_orchestration(process_order, instance_id="order-44")
client.terminate_orchestration("order-44")
durable.runner.run("order-44")  # the episode, inline: the instance ends
raised(lambda: client.raise_orchestration_event("order-44", "approval"))
raised(lambda: client.create_schedule("nightly", process_order, cron="0 3 * *"))  # schedules.md
durable.store.dispose()

print(json.dumps(found))
