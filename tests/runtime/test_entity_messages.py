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
