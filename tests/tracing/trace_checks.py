"""Checks on the spans of one traced `traced_workflow.ship_order` run, wherever they were made."""

from __future__ import annotations

from collections import Counter
from typing import Any

from traced_workflow import EXPECTED

INSTANCE = "durabletask.task.instance_id"
TASK_ID = "durabletask.task.task_id"


def check_one_trace(spans: list[dict[str, Any]], request_name: str,
                    instance_id: str) -> dict[str, Any]:
    """Assert the trace of ``instance_id`` started in the span ``request_name``: one trace id,
    every parent present, the tree as docs/tracing.md draws it, no duplicates. Returns the
    spans by name (lists) for further checks."""
    (request,) = [s for s in spans if s["name"] == request_name]
    ours = [s for s in spans if s["trace_id"] == request["trace_id"]]
    by_id = {s["span_id"]: s for s in ours}
    assert len(by_id) == len(ours), "a span id appears twice"
    # nothing of the orchestration went to another trace
    others = [s for s in spans if s["trace_id"] != request["trace_id"]
              and s["attributes"].get(INSTANCE, "").startswith(instance_id)]
    assert not others, f"spans of the orchestration in another trace: {others}"
    for span in ours:
        if span is not request:
            assert span["parent_id"] in by_id, f"{span['name']} has a broken parent"
    names = Counter(s["name"] for s in ours)
    for name, count in EXPECTED.items():
        assert names[name] == count, (name, names)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in ours:
        by_name.setdefault(span["name"], []).append(span)

    def ancestor(span: dict[str, Any], prefix: str) -> dict[str, Any]:
        """The nearest ancestor whose name starts with ``prefix``."""
        parent = by_id[span["parent_id"]]
        while not parent["name"].startswith(prefix):
            parent = by_id[parent["parent_id"]]
        return parent

    (create,) = by_name["create_orchestration:ship_order"]
    assert create["parent_id"] == request["span_id"]
    assert create["kind"] == "PRODUCER" and create["attributes"][INSTANCE] == instance_id
    (child_create,) = by_name["create_orchestration:charge_payment"]
    episodes = by_name["orchestration:ship_order"]
    child_episodes = by_name["orchestration:charge_payment"]
    assert all(e["parent_id"] == create["span_id"] for e in episodes)
    assert all(e["parent_id"] == child_create["span_id"] for e in child_episodes)
    assert by_id[child_create["parent_id"]]["name"] == "orchestration:ship_order"
    for name in ("orchestration:ship_order:timer", "orchestration_event:approved"):
        assert by_name[name][0]["parent_id"] == create["span_id"], name
    for name in ("activity:reserve", "activity:price"):
        for span in by_name[name]:
            assert ancestor(span, "orchestration:")["name"] == "orchestration:ship_order"
    assert ancestor(by_name["activity:charge"][0], "orchestration:")["name"] == \
        "orchestration:charge_payment"
    # one span per activity task (a replay makes none; a crash would make a second attempt)
    tasks = Counter((s["attributes"][INSTANCE], s["attributes"][TASK_ID])
                    for s in ours if s["name"].startswith("activity:"))
    assert set(tasks.values()) == {1}, tasks
    assert len(episodes) >= 4 and len(child_episodes) >= 2
    return by_name
