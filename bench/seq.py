"""seq: N sequential no-op steps. Plain: ``chain(plain_noop.si() x N)``, its last task marks the
end. Ours: the ``bench.seq`` orchestrator calling the no-op ``bench.noop`` activity N times, its
end the store's ``completed_at``. Figure: milliseconds per step (median of the repetitions).

Targets: ours at most 1.5x the plain chain per step (2x for the embedded default, see
``embedded.py``), and ours per step at the largest N within 1.2x of that at the smallest. The
"seq, local activities" rows run ``bench.seq_local`` (``ctx.call_local_activity``: the steps
run inside the episode, a batch of ``durable_local_activity_batch`` per commit): at most 0.5x
the plain chain per step.

Run alone: ``.venv/bin/python bench/seq.py [--local] [N ...]`` (Redis; default N = 100 1000).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import bench_app
from celery import chain
from harness import REDIS, Cluster, Row, alternate, counter_delta, log, median

RATIO_LIMIT = 1.5
LOCAL_RATIO_LIMIT = 0.5
SCALING_LIMIT = 1.2


def plain_chain(cluster: Cluster, n: int) -> float:
    """Seconds for a plain chain of ``n`` no-op tasks, end to end."""


    app = cluster.app
    token = cluster.marks.token("chain")
    sig = chain(*[app.signature(bench_app.PLAIN_NOOP, immutable=True) for _ in range(n - 1)],
                app.signature(bench_app.PLAIN_NOOP, args=(token,), immutable=True))
    start = time.time()
    sig.apply_async()
    ((end, _),) = cluster.marks.wait(token, 1, 60 + n * 0.2, cluster)
    return end - start


def orchestration(cluster: Cluster, n: int, orchestrator: str = "bench.seq") -> float:
    """Seconds for a ``bench.seq`` (or ``orchestrator``) orchestration of ``n`` steps,
    scheduling to completed_at."""
    iid = cluster.marks.token("seq")
    start = time.time()
    cluster.schedule(orchestrator, n, instance_id=iid)
    ((_, end),) = cluster.wait_completed(iid, 1, 60 + n * 0.2)
    return end - start


def per_step_counters(delta: dict[str, Any], steps: int) -> dict[str, float]:
    """The worker's counters per orchestration step (see bench_app)."""
    zero = [0, 0.0, 0]
    activity = delta["tasks"].get("bench.noop", zero)
    episode = delta["tasks"].get("celery_durable.episode", zero)
    plain = delta["tasks"].get("bench.plain_noop", zero)
    return {
        "events processed per step": delta["events_processed"] / steps,
        "SQL statements per step (activity task)": activity[2] / steps,
        "ms inside the activity task per step": activity[1] * 1000 / steps,
        "ms inside a plain no-op task": plain[1] * 1000 / max(plain[0], 1),
        "wake-up episode tasks per step": episode[0] / steps,
        "cache misses per step": delta["misses"] / steps,
    }


def measure(cluster: Cluster, ns: list[int], reps: int, *, workload: str = "seq",
            limit: float = RATIO_LIMIT, orchestrator: str = "bench.seq") -> list[Row]:
    rows: list[Row] = []
    ours_ms: dict[int, float] = {}
    for _ in range(2):  # warm-up: connections, pool processes, schema, imports
        plain_chain(cluster, 10)
        orchestration(cluster, 10, orchestrator)
    for n in ns:
        before = cluster.settled_counters()
        figures = alternate(reps, {"plain": lambda n=n: plain_chain(cluster, n),
                                   "ours": lambda n=n: orchestration(cluster, n, orchestrator)})
        delta = counter_delta(cluster.settled_counters(), before)
        plain, ours = (median(figures[s]) * 1000 / n for s in ("plain", "ours"))
        ours_ms[n] = ours
        row = Row(workload, cluster.backend.name, n, "ms/step", plain, ours, limit,
                  f"ours/plain chain <= {limit}",
                  extra={"per rep plain": [round(t * 1000 / n, 2) for t in figures["plain"]],
                         "per rep ours": [round(t * 1000 / n, 2) for t in figures["ours"]],
                         **{k: round(v, 3) for k, v in
                            per_step_counters(delta, reps * n).items()}})
        log(f"{workload} {cluster.backend.name} N={n}: plain {plain:.2f} ms/step, ours "
            f"{ours:.2f} ms/step, ratio {ours / plain:.2f}")
        rows.append(row)
    if len(ns) > 1 and workload == "seq":
        small, large = min(ns), max(ns)
        rows.append(Row(f"{workload} scaling", cluster.backend.name, large, "x", None,
                        ours_ms[large], SCALING_LIMIT,
                        f"ours per step at N={large} / at N={small} <= {SCALING_LIMIT}",
                        value=ours_ms[large] / ours_ms[small]))
    return rows


def measure_local(cluster: Cluster, ns: list[int], reps: int) -> list[Row]:
    """The "seq, local activities" rows: ``bench.seq_local`` against the same plain chain."""
    return measure(cluster, ns, reps, workload="seq, local activities",
                   limit=LOCAL_RATIO_LIMIT, orchestrator="bench.seq_local")


def main() -> int:
    args = sys.argv[1:]
    local = "--local" in args
    ns = [int(a) for a in args if a != "--local"] or [100, 1000]
    with Cluster(REDIS) as cluster:
        rows = measure_local(cluster, ns, 3) if local else measure(cluster, ns, 3)
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
