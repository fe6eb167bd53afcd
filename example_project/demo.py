"""``make demo``: start a worker, run one order through the workflow, print each step, exit 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from example_project.app import BROKER_URL, HERE, STORE_URL, durable
from example_project.orders import process_order

ORDER = {"id": "A-1001", "total": 42.5,
         "items": [{"sku": "book", "qty": 1}, {"sku": "pen", "qty": 3}, {"sku": "lamp", "qty": 1}]}


def main() -> int:
    if BROKER_URL.startswith("filesystem") and STORE_URL.startswith("sqlite"):
        shutil.rmtree(HERE, ignore_errors=True)  # a fresh embedded broker and store each run
        (HERE / "broker").mkdir(parents=True, exist_ok=True)
        (HERE / "control").mkdir(parents=True, exist_ok=True)
    print(f"broker: {BROKER_URL}   store: {STORE_URL}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "example_project.app", "--quiet", "worker",
         "--concurrency", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        env={**os.environ, "EXAMPLE_DATA_DIR": str(HERE),
             "PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges"})
    try:
        return run_order()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def run_order() -> int:
    client = durable.client
    instance_id = client.schedule_new_orchestration(process_order, input=ORDER)
    print(f"scheduled order workflow {instance_id}")
    last = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.get_orchestration_state(instance_id)
        assert state is not None
        step = (state.runtime_status.value, state.custom_status)
        if step != last:
            print(f"  {state.runtime_status.value:<10} {state.custom_status or ''}")
            last = step
            if state.custom_status == "waiting for approval":
                print("  -> raising the 'approval' event")
                client.raise_orchestration_event(instance_id, "approval", data=True)
        if state.runtime_status.is_terminal:
            break
        time.sleep(0.05)
    state = client.wait_for_orchestration_completion(instance_id, timeout=5)
    print(f"result: {state.output}")
    print("(the first charge attempt fails on purpose: the retry policy runs it again)")
    print("history:")
    for event in client.get_orchestration_history(instance_id):
        print(f"  {event.seq:>3} {event.timestamp:%H:%M:%S.%f} {event.kind:<18} "
              f"{event.name or '':<34} {'' if event.task_id is None else event.task_id}")
    state.raise_if_failed()
    return 0 if state.output and state.output.get("status") == "shipped" else 1


if __name__ == "__main__":
    sys.exit(main())
