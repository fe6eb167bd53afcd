"""embedded: the seq workload on the package's no-server default, a SQLite store and kombu's
filesystem broker (polling every 50 ms, as the example project's setup), ours against a plain
chain on that same broker. Figure: milliseconds per step.

Target: ours at most 2x the plain chain per step.
"""

from __future__ import annotations

import sys

import seq
from harness import EMBEDDED, Cluster, Row

RATIO_LIMIT = 2.0


def measure(cluster: Cluster, ns: list[int], reps: int) -> list[Row]:
    return seq.measure(cluster, ns, reps, workload="embedded", limit=RATIO_LIMIT)


def main() -> int:
    ns = [int(a) for a in sys.argv[1:]] or [100]
    with Cluster(EMBEDDED) as cluster:
        for row in measure(cluster, ns, 3):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
