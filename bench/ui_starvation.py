"""Do heavy dashboard calls starve light ones? (issue 16, finding 5)

Starts ``celery durable ui`` (SQLite store, Redis db 13 broker, no worker) with one instance of
20,001 history events, sends 12 concurrent ``/timeline`` calls (each replays the orchestrator
over the whole history) and, meanwhile, times ``/api/config`` and ``/api/instances/<id>`` one
after the other. Prints the timelines' wall time and the light calls' latencies.

    PYTHONPATH=. python bench/ui_starvation.py [--code PATH]

``--code``: the celery_durable tree the dashboard runs (default: this one), to compare with
another commit's code (e.g. a ``git archive`` of it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "ui"), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from hardening_helpers import dashboard  # noqa: E402

from celery_durable.engine import history as h  # noqa: E402
from celery_durable.store.records import to_db_time  # noqa: E402
from celery_durable.store.schema import history  # noqa: E402

EVENTS = 20_001
HEAVY = 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, \
            dashboard(Path(folder), [], code=args.code.resolve()) as dash:
        iid = dash.schedule("heavy")
        record = dash.durable.store.get_instance(iid)
        assert record is not None
        with dash.durable.store.engine.begin() as conn:
            conn.execute(sa.insert(history), [
                {"instance_id": iid, "execution_id": record.execution_id, "seq": seq,
                 "kind": h.EVENT_RAISED, "timestamp": to_db_time(record.created_at),
                 "task_id": None, "name": f"tick-{seq}", "data": "null"}
                for seq in range(EVENTS)])
        status = dash.request("GET", f"/api/instances/{iid}/timeline", timeout=120)[0]
        assert status == 200, status
        idle = [_timed(dash, "/api/config") for _ in range(20)]
        done = threading.Event()
        heavy_times: list[float] = []

        def heavy() -> None:
            heavy_times.append(_timed(dash, f"/api/instances/{iid}/timeline"))

        light: dict[str, list[float]] = {"/api/config": [], f"/api/instances/{iid}": []}

        def prober() -> None:
            while not done.is_set():
                for path, times in light.items():
                    times.append(_timed(dash, path))

        threads = [threading.Thread(target=heavy) for _ in range(HEAVY)]
        probe = threading.Thread(target=prober)
        started = time.monotonic()
        probe.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
        done.set()
        probe.join()
        print(f"code: {args.code}")
        print(f"idle /api/config: median {statistics.median(idle) * 1000:.1f} ms")
        print(f"{HEAVY} concurrent timelines of {EVENTS:,} events: all done in {wall:.2f} s "
              f"(each {min(heavy_times):.2f}-{max(heavy_times):.2f} s)")
        for path, times in light.items():
            label = "/api/instances/<id>" if path != "/api/config" else path
            print(f"meanwhile {label}: {len(times)} calls, median "
                  f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")


def _timed(dash: object, path: str) -> float:
    started = time.monotonic()
    status = dash.request("GET", path, timeout=120)[0]  # type: ignore[attr-defined]
    assert status == 200, (path, status)
    return time.monotonic() - started


if __name__ == "__main__":
    main()
