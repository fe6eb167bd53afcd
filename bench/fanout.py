"""fanout: N no-op activities at once, then fan-in. Plain, twice: ``chord([plain_member] x N,
plain_mark)`` on the Redis result backend (native chord counting, no ``chord_unlock`` polling),
its callback marks the end; and the same chord as an application that wants the outcome writes
it, its callback's result stored too and waited for (``AsyncResult.get``; the end is the
callback's ``date_done``), the row "fanout (chord + result)". Ours: the ``bench.fanout`` orchestrator (``when_all`` of N
``bench.noop`` activities), its end the store's ``completed_at``. Figure: seconds.

Targets: ours no slower than the chord (ratio <= 1.0), and the orchestrator's replay work O(N):
the history events the engine replays or is fed across the whole fan-out (the worker's
``events_processed`` counters) at most 3N, give or take a constant: each pool process keeps its
own state cache, and catches up with the events the other one recorded, so with two processes
one sees every event of the ~2N-event history once and the other every completion once (3N + 2
at best); ``COLD_STARTS`` allows for the first episodes and wake-ups.
"""

from __future__ import annotations

import sys
import time
from datetime import timezone

import bench_app
from celery import chord
from harness import REDIS, Cluster, Row, alternate, counter_delta, log, median

RATIO_LIMIT = 1.0
EVENTS_LIMIT = 3.0
#: events allowed on top of 3N per fan-out (a constant: cold starts of the pool processes)
COLD_STARTS = 10


def plain_chord(cluster: Cluster, n: int) -> float:
    app = cluster.app
    token = cluster.marks.token("chord")
    header = [app.signature(bench_app.PLAIN_MEMBER) for _ in range(n)]
    callback = app.signature(bench_app.PLAIN_MARK, kwargs={"token": token})
    start = time.time()
    chord(header)(callback)
    ((end, _),) = cluster.marks.wait(token, 1, 120 + n * 0.05, cluster)
    return end - start


def chord_with_result(cluster: Cluster, n: int) -> float:
    """The chord with its callback's result stored and waited for (Redis result backend)."""
    app = cluster.app
    header = [app.signature(bench_app.PLAIN_MEMBER) for _ in range(n)]
    callback = app.signature(bench_app.PLAIN_MEMBER, immutable=True)  # stores its result
    start = time.time()
    result = chord(header)(callback)
    result.get(timeout=120 + n * 0.05, propagate=True)
    done = result.date_done
    assert done is not None, result
    return (done if done.tzinfo else done.replace(tzinfo=timezone.utc)).timestamp() - start


def orchestration(cluster: Cluster, n: int) -> float:
    iid = cluster.marks.token("fanout")
    start = time.time()
    cluster.schedule("bench.fanout", n, instance_id=iid)
    ((_, end),) = cluster.wait_completed(iid, 1, 120 + n * 0.05)
    return end - start


def measure(cluster: Cluster, ns: list[int], reps: int) -> list[Row]:
    rows: list[Row] = []
    with_result = bool(cluster.app.conf.result_backend)
    plain_chord(cluster, 20)
    orchestration(cluster, 20)
    if with_result:
        chord_with_result(cluster, 20)
    for n in ns:
        before = cluster.settled_counters()
        sides = {"plain": lambda n=n: plain_chord(cluster, n),
                 "ours": lambda n=n: orchestration(cluster, n)}
        if with_result:
            sides["chord + result"] = lambda n=n: chord_with_result(cluster, n)
        figures = alternate(reps, sides)
        delta = counter_delta(cluster.settled_counters(), before)
        plain, ours = median(figures["plain"]), median(figures["ours"])
        events = delta["events_processed"] / reps
        wakeups = delta["tasks"].get("celery_durable.episode", [0, 0.0, 0])[0] / reps
        log(f"fanout {cluster.backend.name} N={n}: chord {plain:.2f} s, ours {ours:.2f} s, "
            f"ratio {ours / plain:.2f}; {events:.0f} events processed ({events / n:.3f} N), "
            f"{wakeups:.0f} wake-up tasks per fan-out")
        rows.append(Row("fanout", cluster.backend.name, n, "s", plain, ours, RATIO_LIMIT,
                        f"ours/plain chord <= {RATIO_LIMIT}",
                        extra={"per rep plain": [round(t, 2) for t in figures["plain"]],
                               "per rep ours": [round(t, 2) for t in figures["ours"]],
                               "wake-up episode tasks per fan-out": round(wakeups, 1),
                               "cache misses per fan-out": delta["misses"] / reps}))
        if with_result:
            stored = median(figures["chord + result"])
            log(f"fanout {cluster.backend.name} N={n}: chord + result {stored:.2f} s, ours "
                f"{ours:.2f} s, ratio {ours / stored:.2f}")
            rows.append(Row("fanout (chord + result)", cluster.backend.name, n, "s", stored, ours,
                            RATIO_LIMIT, f"ours/chord with its result stored <= {RATIO_LIMIT}",
                            extra={"per rep plain": [round(t, 2)
                                                     for t in figures["chord + result"]]}))
        rows.append(Row("fanout replay", cluster.backend.name, n, "events / N", None,
                        events / n, EVENTS_LIMIT + COLD_STARTS / n,
                        f"history events processed <= {EVENTS_LIMIT:.0f}N + {COLD_STARTS}",
                        value=events / n, extra={"events processed per fan-out": events}))
    return rows


def main() -> int:
    ns = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    with Cluster(REDIS) as cluster:
        for row in measure(cluster, ns, 3):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
