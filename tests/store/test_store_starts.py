"""`Store.execution_start`: an execution's ExecutionStarted read alone (what tracing needs for a
message rebuilt from history), on every backend."""

from __future__ import annotations

from store_helpers import create, drain

from celery_durable.store import Store


def test_execution_start_reads_the_start_of_that_execution(store: Store) -> None:
    rec = create(store, "order-7", "process_order")
    assert store.execution_start("order-7", rec.execution_id) is None  # still in the inbox
    drain(store, "order-7")  # the first episode appends it to history
    start = store.execution_start("order-7", rec.execution_id)
    assert start is not None and start.kind == "ExecutionStarted" and start.seq == 0
    assert start.name == "process_order"
    assert store.execution_start("order-7", "another-execution") is None
    assert store.execution_start("nobody", rec.execution_id) is None
