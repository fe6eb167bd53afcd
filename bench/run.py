"""Run every benchmark workload, ours and plain Celery side by side in the same run.

Usage: ``.venv/bin/python bench/run.py [--quick] [--only seq,fanout,...]`` (``make bench``,
``make bench QUICK=1``). Prints a table of medians and ratios, writes ``bench/results.md`` and
``bench/results.png`` (``results-quick.*`` with ``--quick``), and exits with status 1 when a
target is missed (or could not be measured: a service is down).

Workloads (one module each): seq and embedded (N sequential steps; embedded also against a
plain chain on a Redis cluster started beside it, the "embedded hop" row), fanout (N at once, then
fan-in), many (N orchestrations of 3 steps), timers (N one-second sleeps), events (external
event to the next activity); seq (N = 100) and many again with local activities
(``ctx.call_local_activity``, rows marked "local activities"). One worker subprocess per backend runs both sides; see harness.py.
events, many and timers run a second time with ``durable_client_episodes`` on the client (rows
marked "client episodes"): an opt-in setting, so the plain rows are the default's figures.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import embedded
import events
import fanout
import many
import seq
import timers
from harness import BACKENDS, BENCH_DIR, Cluster, Row, log


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: N values and repetitions of each workload."""

    seq_ns: list[int]
    seq_reps: int
    fanout_ns: list[int]
    fanout_reps: int
    many_n: int
    many_reps: int
    timers_n: int
    events_rounds: int
    embedded_ns: list[int]
    embedded_reps: int
    embedded_hop_n: int


FULL = Plan(seq_ns=[100, 1000], seq_reps=5, fanout_ns=[1000, 3000, 10000], fanout_reps=3,
            many_n=1000, many_reps=3, timers_n=1000, events_rounds=30, embedded_ns=[100],
            embedded_reps=3, embedded_hop_n=100)
QUICK = Plan(seq_ns=[20, 100], seq_reps=2, fanout_ns=[100, 400], fanout_reps=1, many_n=100,
             many_reps=1, timers_n=100, events_rounds=10, embedded_ns=[30], embedded_reps=1,
             embedded_hop_n=30)

WORKLOADS = ["seq", "fanout", "many", "timers", "events", "embedded"]


def steps(plan: Plan) -> dict[str, list[tuple[str, Callable[[Cluster], list[Row]]]]]:
    """What runs on each backend's cluster, in order: (workload, measure)."""
    return {
        "redis": [
            ("seq", lambda c: seq.measure(c, plan.seq_ns, plan.seq_reps)),
            ("seq", lambda c: seq.measure_local(c, [n for n in plan.seq_ns if n <= 100][-1:],
                                                   plan.seq_reps)),
            ("events", lambda c: events.measure(c, plan.events_rounds)),
            ("many", lambda c: many.measure(c, plan.many_n, plan.many_reps)),
            ("many", lambda c: many.measure_local(c, plan.many_n, plan.many_reps)),
            ("timers", lambda c: timers.measure(c, plan.timers_n)),
            ("fanout", lambda c: fanout.measure(c, plan.fanout_ns, plan.fanout_reps)),
            ("events", client_episodes(lambda c: events.measure(c, plan.events_rounds))),
            ("many", client_episodes(lambda c: many.measure(c, plan.many_n, plan.many_reps))),
            ("timers", client_episodes(lambda c: timers.measure(c, plan.timers_n))),
        ],
        "rabbitmq": [("seq", lambda c: seq.measure(c, plan.seq_ns, plan.seq_reps)),
                     ("seq", lambda c: seq.measure_local(c, [n for n in plan.seq_ns if n <= 100][-1:],
                                                   plan.seq_reps))],
        "embedded": [("embedded", lambda c: embedded.measure(c, plan.embedded_ns,
                                                             plan.embedded_reps)),
                     ("embedded", lambda c: embedded.measure_hop(c, plan.embedded_hop_n,
                                                                 plan.embedded_reps))],
    }


def client_episodes(measure: Callable[[Cluster], list[Row]]) -> Callable[[Cluster], list[Row]]:
    """``measure`` again with ``durable_client_episodes`` on the client (an opt-in setting: the
    client runs the episode its start or event causes, one broker hop less)."""
    def measured(cluster: Cluster) -> list[Row]:
        with cluster.client_episodes():
            return [replace(row, workload=f"{row.workload}, client episodes")
                    for row in measure(cluster)]
    return measured


def run(plan: Plan, only: list[str]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    problems: list[str] = []
    for backend_name, planned in steps(plan).items():
        planned = [(w, m) for w, m in planned if w in only]
        if not planned:
            continue
        backend = BACKENDS[backend_name]
        missing = backend.missing()
        if missing:
            problems.append(f"{backend_name}: not measured ({', '.join(missing)} not running): "
                            + ", ".join(w for w, _ in planned))
            log(problems[-1])
            continue
        with Cluster(backend) as cluster:
            for workload, measure in planned:
                started = time.monotonic()
                try:
                    rows.extend(measure(cluster))
                except Exception as exc:  # report it, run the others
                    problems.append(f"{workload} on {backend_name} failed: {exc!r}"[:2000])
                    log(problems[-1])
                log(f"-- {workload} on {backend_name}: {time.monotonic() - started:.0f} s")
    return rows, problems


# -- report ------------------------------------------------------------------------------------

def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def verdict(row: Row) -> str:
    return {True: "met", False: "**MISSED**", None: "-"}[row.passed]


def table(rows: list[Row]) -> list[str]:
    lines = ["| workload | backend | N | unit | plain Celery | ours | ratio / value | target "
             "| result |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.workload} | {r.backend} | {r.n} | {r.unit} | {_num(r.plain)} "
                     f"| {_num(r.ours)} | {_num(r.ratio)} | {r.target} | {verdict(r)} |")
    return lines


def machine() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            f"at the end; Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}")


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR,
                              capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def report(rows: list[Row], problems: list[str], quick: bool, elapsed: float,
           command: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Benchmark results{' (quick run: small N, not the reference figures)' if quick else ''}",
        "",
        f"`{command}` on {stamp}, commit {_git_revision()}, {elapsed:.0f} s; {machine()}.",
        "One worker subprocess per backend, `--pool prefork --concurrency 2`, late acks, "
        "prefetch 1; PostgreSQL store except the embedded default (SQLite + filesystem broker). "
        "Figures are medians of the repetitions; ratio = ours / plain Celery in the same run.",
        "",
        *table(rows),
        "",
    ]
    if problems:
        lines += ["Not measured:", "", *[f"- {p}" for p in problems], ""]
    detailed = [r for r in rows if r.extra]
    if detailed:
        lines += ["## Details", ""]
        for r in detailed:
            extra = "; ".join(f"{k}: {v}" for k, v in r.extra.items())
            lines.append(f"- {r.workload} {r.backend} N={r.n}: {extra}")
        lines.append("")
    return "\n".join(lines)


COLORS = {"redis": "tab:red", "rabbitmq": "tab:orange", "embedded": "tab:green"}


def chart(rows: list[Row], path: Path) -> bool:
    """Per-step cost against N for seq, time against N for fanout; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels: list[tuple[Any, str, str]] = [(axes[0], "seq", "ms per step"),
                                          (axes[1], "fanout", "seconds")]
    for ax, workload, ylabel in panels:
        chosen = [r for r in rows if r.workload == workload]
        for backend in sorted({r.backend for r in chosen}):
            mine = sorted((r for r in chosen if r.backend == backend), key=lambda r: r.n)
            ns = [r.n for r in mine]
            color = COLORS.get(backend)
            ax.plot(ns, [r.plain for r in mine], "o--", color=color, alpha=0.55,
                    label=f"plain Celery ({backend})")
            ax.plot(ns, [r.ours for r in mine], "o-", color=color,
                    label=f"celery_durable ({backend})")
        ax.set_xscale("log")
        if workload == "fanout":
            ax.set_yscale("log")
        ax.set_xlabel("N")
        ax.set_ylabel(ylabel)
        ax.set_title({"seq": "seq: N sequential no-op steps",
                      "fanout": "fanout: N activities, then fan-in"}[workload])
        ax.grid(True, alpha=0.3)
        if chosen:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, fewer repetitions")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads (default: {','.join(WORKLOADS)})")
    args = parser.parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {WORKLOADS}")
    started = time.monotonic()
    rows, problems = run(QUICK if args.quick else FULL, only)
    elapsed = time.monotonic() - started
    command = "make bench QUICK=1" if args.quick else "make bench"
    if set(only) != set(WORKLOADS):
        command = f"bench/run.py {'--quick ' if args.quick else ''}--only {','.join(only)}"
    text = report(rows, problems, args.quick, elapsed, command)
    name = "results-quick" if args.quick else "results"
    (BENCH_DIR / f"{name}.md").write_text(text)
    chart(rows, BENCH_DIR / f"{name}.png")
    print(text)
    missed = [r for r in rows if r.passed is False]
    if missed or problems:
        print(f"{len(missed)} target(s) missed, {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
