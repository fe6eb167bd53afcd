"""embedded: the seq workload on the package's no-server default, a SQLite store and kombu's
filesystem broker (as the example project sets it up: no ``polling_interval``; a waiting worker
is told of new messages by inotify), ours against a plain chain on that same broker. Figure:
milliseconds per step.

Targets: ours at most 2x the plain chain per step ("embedded"); and, the "embedded hop" row,
ours on the embedded default at most 3x a plain chain's step on Redis, measured in the same run
on a Redis cluster started beside the embedded one (`measure_hop`): the filesystem broker's hop
must not cost a polling interval.

Run alone: ``.venv/bin/python bench/embedded.py [--hop] [N ...]`` (default N = 100).
"""

from __future__ import annotations

import sys

import seq
from harness import EMBEDDED, REDIS, Cluster, Row, alternate, log, median

RATIO_LIMIT = 2.0
HOP_RATIO_LIMIT = 3.0


def measure(cluster: Cluster, ns: list[int], reps: int) -> list[Row]:
    return seq.measure(cluster, ns, reps, workload="embedded", limit=RATIO_LIMIT)


def measure_hop(cluster: Cluster, n: int, reps: int) -> list[Row]:
    """The "embedded hop" row: ``bench.seq`` of ``n`` steps on ``cluster`` (the embedded default)
    against a plain chain of ``n`` on a Redis cluster started for it, alternating; the plain
    chain on the filesystem broker runs too, for the report."""
    missing = REDIS.missing()
    if missing:
        raise RuntimeError(f"embedded hop needs {', '.join(missing)} (a Redis chain beside it)")
    with Cluster(REDIS) as redis:
        for _ in range(2):  # warm-up: connections, pool processes, schema, imports
            seq.plain_chain(redis, 10)
            seq.orchestration(cluster, 10)
            seq.plain_chain(cluster, 10)
        figures = alternate(reps, {
            "redis chain": lambda: seq.plain_chain(redis, n),
            "ours": lambda: seq.orchestration(cluster, n),
            "filesystem chain": lambda: seq.plain_chain(cluster, n)})
    plain, ours, fs_chain = (median(figures[s]) * 1000 / n
                             for s in ("redis chain", "ours", "filesystem chain"))
    log(f"embedded hop N={n}: Redis chain {plain:.2f} ms/step, ours embedded {ours:.2f} "
        f"ms/step ({ours / plain:.2f}x), filesystem chain {fs_chain:.2f} ms/step")
    return [Row("embedded hop", cluster.backend.name, n, "ms/step", plain, ours, HOP_RATIO_LIMIT,
                f"ours embedded step / plain Redis chain step <= {HOP_RATIO_LIMIT}",
                extra={"plain filesystem chain ms/step": round(fs_chain, 2),
                       **{f"per rep {side}": [round(t * 1000 / n, 2) for t in times]
                          for side, times in figures.items()}})]


def main() -> int:
    args = sys.argv[1:]
    hop = "--hop" in args
    ns = [int(a) for a in args if a != "--hop"] or [100]
    with Cluster(EMBEDDED) as cluster:
        rows = ([row for n in ns for row in measure_hop(cluster, n, 3)] if hop
                else measure(cluster, ns, 3))
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
