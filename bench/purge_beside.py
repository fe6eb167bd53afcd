"""purge beside seq: purging 100,000 ended instances of a million-instance store while the seq
workload (``bench/seq.py``: a plain chain of N no-op tasks against a ``bench.seq`` orchestration
of N activities) runs on the same store, worker and machine.

1. seq alone: ``--reps`` alternating pairs (plain, ours) of N steps; each pair gives a ratio
   ours/plain, their spread is seq's noise band.
2. The same pairs again while another process runs ``purge_orchestrations_by`` for the oldest
   ended instances (``--purge`` of them, by creation time), until it has finished.
3. The instances that had not ended are counted before and after: the purge must not touch one.

Needs the data set of ``bench/million.py`` (a purge removes part of it: run million.py again
before another run). Run: ``.venv/bin/python bench/purge_beside.py [--url URL] [--purge 100000]
[--steps 100] [--reps 15]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from million import DEFAULT_URL  # noqa: E402

from celery_durable.runtime.retention import purge_by  # noqa: E402
from celery_durable.store import Store  # noqa: E402
from celery_durable.store.records import from_db_time  # noqa: E402
from celery_durable.store.schema import instances  # noqa: E402

ENDED = ["COMPLETED", "FAILED", "TERMINATED"]


def cutoff_for(store: Store, n: int) -> Any:
    """The creation time before which (inclusive) ``n`` ended instances were created."""
    query = (sa.select(instances.c.created_at).where(instances.c.status.in_(ENDED))
             .order_by(instances.c.created_at).offset(n - 1).limit(1))
    with store.engine.connect() as conn:
        return from_db_time(conn.execute(query).scalar_one())


def not_ended(store: Store) -> int:
    query = sa.select(sa.func.count()).where(instances.c.status.not_in(ENDED))
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def purge_process(url: str, cutoff: Any, results: Any) -> None:
    store = Store(url)
    started = time.monotonic()
    count = purge_by(store, created_time_to=cutoff)
    results.put((count, time.monotonic() - started))


def pairs(seq: Any, cluster: Any, steps: int, reps: int,
          until: Any = None) -> list[tuple[float, float]]:
    """(plain, ours) seconds per step of alternating pairs: ``reps`` of them, and more while
    ``until()`` is true."""
    out = []
    while len(out) < reps or (until is not None and until()):
        order = ["plain", "ours"] if len(out) % 2 == 0 else ["ours", "plain"]
        got = {}
        for side in order:
            run = seq.plain_chain if side == "plain" else seq.orchestration
            got[side] = run(cluster, steps) / steps
        out.append((got["plain"], got["ours"]))
    return out


def describe(label: str, figures: list[tuple[float, float]]) -> str:
    ratios = sorted(ours / plain for plain, ours in figures)
    plain = statistics.median(p for p, _ in figures) * 1000
    ours = statistics.median(o for _, o in figures) * 1000
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return (f"{label}: {len(figures)} pairs; plain {plain:.2f} ms/step, ours {ours:.2f} "
            f"ms/step; ratio median {statistics.median(ratios):.2f}, quartiles {q1:.2f}-{q3:.2f},"
            f" range {ratios[0]:.2f}-{ratios[-1]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--purge", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    os.environ["BENCH_STORE_URL"] = args.url  # the cluster's worker runs on the big store
    import seq
    from harness import REDIS, Cluster

    store = Store(args.url)
    cutoff = cutoff_for(store, args.purge)
    live_before = not_ended(store)
    print(f"purging the ended instances created up to {cutoff:%Y-%m-%d %H:%M:%S} "
          f"({args.purge:,}); {live_before:,} instances have not ended", flush=True)
    with Cluster(REDIS) as cluster:
        for _ in range(2):  # warm-up, as seq.py
            seq.plain_chain(cluster, 10)
            seq.orchestration(cluster, 10)
        alone = pairs(seq, cluster, args.steps, args.reps)
        print(describe("seq alone", alone), flush=True)
        results: Any = multiprocessing.get_context("spawn").Queue()
        purger = multiprocessing.get_context("spawn").Process(
            target=purge_process, args=(args.url, cutoff, results))
        purger.start()
        beside = pairs(seq, cluster, args.steps, args.reps, until=purger.is_alive)
        purger.join()
        count, seconds = results.get(timeout=10)
        print(describe("seq beside the purge", beside), flush=True)
        after = pairs(seq, cluster, args.steps, args.reps)
        print(describe("seq after the purge", after), flush=True)
    live_after = not_ended(store)
    print(f"purge: {count:,} instances (and their histories) in {seconds:.1f} s, "
          f"{count / seconds:,.0f} instances/s; not ended before {live_before:,}, after "
          f"{live_after:,}")
    store.dispose()
    return 0 if live_after == live_before and count >= args.purge else 1


if __name__ == "__main__":
    sys.exit(main())
