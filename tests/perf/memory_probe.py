"""A worker's memory against the orchestrations it has completed, in a fresh process.

``python memory_probe.py <folder> <total> <checkpoint> [<cache size>]`` creates ``total``
one-activity orchestrations at once (in one transaction: the client's side is not measured) and
runs them through the real runtime in this process (`perf_driver.InProcessWorker`; SQLite store
and filesystem broker under ``folder``): their first episodes run (the episode task, as for a
wake-up message), each leaving its live state to the worker's state cache
(``durable_state_cache_size``, default 1,000, bounded). Then their activities finish, oldest
first, and each orchestration completes. After every ``checkpoint`` completed orchestrations it
prints a JSON line: completed, the memory blocks Python has allocated (``sys.getallocatedblocks``,
after a ``gc.collect()``: what the process holds now), the resident set size in bytes (a high
watermark: freed memory mostly stays with the process), and the cache's size.

The activity messages wait in a spool file under ``folder`` (not in this process's memory, as
they would wait in the broker), so that only the runtime's own memory is measured. With an
unbounded cache, the states of all ``total`` started orchestrations would stay in memory until
each completes: at 1,000 completed this process would hold 9,000 states more than at 10,000.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from perf_driver import InProcessWorker, Published, make_durable  # noqa: E402

from celery_durable.engine import history as h  # noqa: E402
from celery_durable.runtime import messages  # noqa: E402
from celery_durable.store import NewInstance  # noqa: E402
from celery_durable.store.writes import create_instances  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def report(completed: int, cached: int) -> None:
    gc.collect()
    print(json.dumps({"completed": completed, "blocks": sys.getallocatedblocks(), "rss": rss(),
                      "cached": cached}), flush=True)


def main() -> None:
    folder = Path(sys.argv[1])
    total, checkpoint = int(sys.argv[2]), int(sys.argv[3])
    conf = {"durable_state_cache_size": int(sys.argv[4])} if len(sys.argv) > 4 else {}
    durable = make_durable(f"sqlite:///{folder / 'store.sqlite3'}", folder, **conf)
    cache = durable.runner.cache
    name = durable.registry.orchestrator("perf.sequence").name  # declared in perf_driver
    at = datetime.now(timezone.utc)
    with durable.store.engine.begin() as conn:
        create_instances(conn, durable.store.dialect, [
            (NewInstance(f"m-{i}", name, input=1, created_at=at),
             [h.execution_started(name, 1, at)]) for i in range(total)], at)
    spool = folder / "activities.jsonl"
    with InProcessWorker(durable).running() as worker:
        with spool.open("w") as out:
            for i in range(total):
                # the first episode, as its wake-up message runs it: its state is cached
                worker.run(Published(messages.EPISODE_TASK, [[f"m-{i}", name], {}, {}], {}))
                activity = worker.queue.pop()
                out.write(json.dumps([activity.task, activity.body, activity.headers],
                                     default=str) + "\n")
                worker.published.clear()
        report(0, len(cache))
        with spool.open() as spooled:
            for completed, line in enumerate(spooled, 1):
                worker.run(Published(*json.loads(line)))
                worker.published.clear()
                if completed % checkpoint == 0:
                    report(completed, len(cache))
    assert not worker.queue, f"{len(worker.queue)} messages left"
    durable.store.outbox_acks.flush()
    durable.store.dispose()


if __name__ == "__main__":
    main()
