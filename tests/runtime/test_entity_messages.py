"""The entity task's message: its name and argsrepr as Flower shows them, its queue; and the
entity requests' JSON form in the inbox."""

from __future__ import annotations

from datetime import datetime, timezone

from celery_durable.engine.entity_messages import LOCK, SIGNAL, EntityRequest
from celery_durable.runtime.entities import ENTITY_TASK, entity_message


def test_the_entity_message_names_the_entity_for_flower() -> None:
    message = entity_message("@counter@a", "entities")
    assert message["task"] == ENTITY_TASK == "celery_durable.entity"
    assert message["args"] == ["@counter@a"]
    assert message["options"] == {"argsrepr": "('@counter@a',)", "queue": "entities"}
    assert "queue" not in entity_message("@counter@a", None)["options"]


def test_requests_round_trip_through_their_inbox_event() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    for request in (EntityRequest(SIGNAL, "add", {"n": 1}, signal_time=at, timer="t1"),
                    EntityRequest(LOCK, caller="o", caller_execution="e", caller_name="orch",
                                  task_id=3, entities=("@a@1", "@b@2"))):
        event = request.to_event(at)
        back = EntityRequest.from_event(event.__class__.from_json(event.to_json()), 7, "k")
        assert back == EntityRequest(**{**request.__dict__, "row_id": 7, "dedup_key": "k"})


def test_entity_queue_routes_its_episodes_and_delayed_signals(tmp_path: object) -> None:
    from datetime import timedelta

    from celery import Celery

    from celery_durable import Durable, entity

    @entity(name="routed_stock", queue="stock")
    def routed_stock(ctx: object, input: object) -> None:
        return None

    app = Celery("routing", broker="memory://", set_as_current=False)
    durable = Durable(app, store_url=f"sqlite:///{tmp_path}/s.sqlite3")
    assert durable.entities.message("@routed_stock@1")["options"]["queue"] == "stock"
    now = datetime.now(timezone.utc)
    timer, sent = durable.entities.delayed("@routed_stock@1", "k", now + timedelta(seconds=5),
                                           now)
    assert timer.dispatched_at == now and sent[0]["options"]["queue"] == "stock"
    far, none = durable.entities.delayed("@routed_stock@1", "k", now + timedelta(days=9), now)
    assert far.dispatched_at is None and none == []  # the sweeper sends it within the horizon
