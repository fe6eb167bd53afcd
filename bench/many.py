"""many: N orchestrations of 3 steps started at once. Plain: N chains of 3 no-op tasks sent in
a loop, each chain's last task marks. Ours: N ``bench.seq(3)`` orchestrations scheduled in a
loop. Figure: seconds from the first send to the last end (the latest mark or ``completed_at``).

Target (issue 18): ours at most 2.0x the plain chains. The "many, local activities" row runs
``bench.seq_local(3)`` (the 3 steps run inside the first episode): at most 1.0x.
"""

from __future__ import annotations

import sys
import time

import bench_app
from celery import chain
from harness import REDIS, Cluster, Row, alternate, counter_delta, log, median

RATIO_LIMIT = 2.0
LOCAL_RATIO_LIMIT = 1.0
STEPS = 3


#: seconds the client took to send each side's N chains / orchestrations, for the report
sending: dict[str, list[float]] = {"plain": [], "ours": []}


def plain_chains(cluster: Cluster, n: int) -> float:


    app = cluster.app
    token = cluster.marks.token("chains")
    noop = app.signature(bench_app.PLAIN_NOOP, immutable=True)
    chains = [chain(*[noop.clone() for _ in range(STEPS - 1)],
                    app.signature(bench_app.PLAIN_NOOP, args=(token, str(i)), immutable=True))
              for i in range(n)]
    start = time.time()
    for sig in chains:
        sig.apply_async()
    sending["plain"].append(time.time() - start)
    marks = cluster.marks.wait(token, n, 120 + n * 0.1, cluster)
    return max(stamp for stamp, _ in marks) - start


def orchestrations(cluster: Cluster, n: int, orchestrator: str = "bench.seq") -> float:
    prefix = cluster.marks.token("many")
    start = time.time()
    for i in range(n):
        cluster.schedule(orchestrator, STEPS, instance_id=f"{prefix}-{i}")
    sending["ours"].append(time.time() - start)
    ended = cluster.wait_completed(prefix, n, 120 + n * 0.1)
    return max(end for _, end in ended) - start


def measure(cluster: Cluster, n: int, reps: int, *, workload: str = "many",
            limit: float = RATIO_LIMIT, orchestrator: str = "bench.seq") -> list[Row]:
    plain_chains(cluster, 10)
    orchestrations(cluster, 10, orchestrator)
    for side in sending.values():
        side.clear()
    before = cluster.settled_counters()
    figures = alternate(reps, {"plain": lambda: plain_chains(cluster, n),
                               "ours": lambda: orchestrations(cluster, n, orchestrator)})
    delta = counter_delta(cluster.settled_counters(), before)
    tasks = {name: (count / (reps * n), seconds * 1000 / max(count, 1))
             for name, (count, seconds, _) in delta["tasks"].items()}
    plain, ours = median(figures["plain"]), median(figures["ours"])
    log(f"{workload} {cluster.backend.name} N={n}: chains {plain:.2f} s, ours {ours:.2f} s, "
        f"ratio {ours / plain:.2f}")
    return [Row(workload, cluster.backend.name, n, "s", plain, ours, limit,
                f"ours/plain chains of {STEPS} <= {limit}",
                extra={"per rep plain": [round(t, 2) for t in figures["plain"]],
                       "per rep ours": [round(t, 2) for t in figures["ours"]],
                       "client sending, plain": round(median(sending["plain"]), 2),
                       "client sending, ours": round(median(sending["ours"]), 2),
                       **{f"{name}: tasks per orchestration / ms each": (round(c, 2), round(ms, 2))
                          for name, (c, ms) in sorted(tasks.items())}})]


def measure_local(cluster: Cluster, n: int, reps: int) -> list[Row]:
    """The "many, local activities" row: ``bench.seq_local(3)`` against the same chains."""
    return measure(cluster, n, reps, workload="many, local activities",
                   limit=LOCAL_RATIO_LIMIT, orchestrator="bench.seq_local")


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--local"]
    n = int(args[0]) if args else 1000
    reps = int(args[1]) if len(args) > 1 else 3
    measured = measure_local if "--local" in sys.argv[1:] else measure
    with Cluster(REDIS) as cluster:
        for row in measured(cluster, n, reps):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
