"""Sequential no-op steps: a plain Celery chain against a celery_durable orchestration.

Usage: ``.venv/bin/python bench/seq.py [N]`` (N in 100, 1000; default 100).

One ``celery worker --pool prefork --concurrency 2`` subprocess (app: ``bench_app``; late acks,
prefetch 1, no result backend) on Redis db 9 with a queue of its own and a fresh PostgreSQL
database runs both workloads, alternating which goes first in each of 3 repetitions:

- a: ``chain(plain_noop.si() for _ in range(N))``; its last task LPUSHes to a Redis key (db 10),
  which this process BLPOPs (no polling);
- b: the ``bench.seq`` orchestrator calling the no-op ``bench.noop`` activity N times in
  sequence, awaited with ``client.wait_for_orchestration_completion`` (which polls the store with
  a backoff up to 250 ms, so "b store" also reports completed_at - created_at from the store).

For reference only, a plain relay (each task sends the next; no chain payload) runs after a and
b in each repetition. Prints per-step medians and the ratio b/a, and writes them to ``bench/results.md``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
TESTS_DIR = BENCH_DIR.parent / "tests"
sys.path[:0] = [str(BENCH_DIR), str(TESTS_DIR)]

import redis  # noqa: E402
from bench_app import (  # noqa: E402
    ENV_COUNTERS,
    EPISODE_TASK_NAME,
    PLAIN_NOOP,
    PLAIN_RELAY,
    env_config,
    make_app,
)
from celery import chain  # noqa: E402
from services import REDIS_URL, database, reachable  # noqa: E402
from workers import WorkerProcess, delete_queue, stop_all, subprocess_env, wait_until  # noqa: E402

REPS = 3
BROKER_URL = f"{REDIS_URL}/9"
DONE_URL = f"{REDIS_URL}/10"
RESULTS = BENCH_DIR / "results.md"


def run_chain(app: Any, done: redis.Redis, n: int, worker: WorkerProcess) -> float:
    """Seconds for a plain chain of ``n`` no-op tasks, end to end."""
    token = f"bench-done-{uuid.uuid4().hex}"
    sig = app.signature(PLAIN_NOOP)
    start = time.perf_counter()
    chain(*[sig.clone().set(immutable=True) for _ in range(n - 1)],
          app.signature(PLAIN_NOOP, args=(token,), immutable=True)).apply_async()
    deadline = time.monotonic() + 30 + n * 0.1
    while not done.blpop([token], timeout=1):
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"chain of {n} did not finish")
    elapsed = time.perf_counter() - start
    done.delete(token)
    return elapsed


def run_relay(app: Any, done: redis.Redis, n: int, worker: WorkerProcess) -> float:
    """Seconds for ``n`` plain tasks that each send the next one (a chain without the chain's
    payload of the remaining signatures)."""
    token = f"bench-done-{uuid.uuid4().hex}"
    start = time.perf_counter()
    app.send_task(PLAIN_RELAY, (n, token))
    deadline = time.monotonic() + 30 + n * 0.1
    while not done.blpop([token], timeout=1):
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"relay of {n} did not finish")
    elapsed = time.perf_counter() - start
    done.delete(token)
    return elapsed


def run_orchestration(durable: Any, n: int, worker: WorkerProcess) -> tuple[float, float]:
    """(seconds awaited by the client, seconds from created_at to completed_at in the store)."""
    client = durable.client
    start = time.perf_counter()
    instance_id = client.schedule_new_orchestration("bench.seq", input=n)
    deadline = time.monotonic() + 30 + n * 0.1
    while True:
        worker.check_alive()
        try:
            state = client.wait_for_orchestration_completion(instance_id, timeout=2.0)
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
    elapsed = time.perf_counter() - start
    if state.runtime_status.value != "COMPLETED":
        raise RuntimeError(f"orchestration ended {state.runtime_status}: {state}")
    record = durable.store.get_instance(instance_id)
    return elapsed, (record.completed_at - record.created_at).total_seconds()


def read_counters(folder: Path) -> dict[str, Any]:
    total: dict[str, Any] = {"episodes": 0, "events_processed": 0, "hits": 0, "misses": 0,
                             "tasks": {}}
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text())
        for key in ("episodes", "events_processed", "hits", "misses"):
            total[key] += data[key]
        for name, values in data["tasks"].items():
            old = total["tasks"].get(name, [0, 0.0, 0])
            total["tasks"][name] = [o + v for o, v in zip(old, values, strict=True)]
    return total


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for service in ("redis", "postgresql"):
        if not reachable(service):
            print(f"{service} is not running on localhost", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="durable-bench-"))
    counters = tmp / "counters"
    counters.mkdir()
    queue = f"durable-bench-{uuid.uuid4().hex[:8]}"
    done = redis.Redis.from_url(DONE_URL)
    with database("postgresql", "durable_bench") as store_url:
        app, durable = make_app(BROKER_URL, store_url, queue, name="bench-client")
        env = {**env_config(BROKER_URL, store_url, queue, DONE_URL),
               ENV_COUNTERS: str(counters)}
        node = f"{queue}@bench"
        worker = WorkerProcess("bench_app:app", node, env=subprocess_env(env, [BENCH_DIR,
                               TESTS_DIR]), cwd=BENCH_DIR, log_path=tmp / "worker.log",
                               options=["--loglevel", "WARNING"])
        try:
            wait_until("worker ping", lambda: app.control.ping(destination=[node], timeout=0.5),
                       time.monotonic() + 60, [worker], interval=0)
            # warm up both paths (connections, imports, the schema, pool processes)
            for _ in range(2):
                run_chain(app, done, 20, worker)
                run_relay(app, done, 20, worker)
                run_orchestration(durable, 20, worker)
            time.sleep(0.5)
            before = read_counters(counters)
            a_times: list[float] = []
            b_times: list[float] = []
            b_store: list[float] = []
            r_times: list[float] = []
            for rep in range(REPS):
                order = "ab" if rep % 2 == 0 else "ba"
                for which in order:
                    if which == "a":
                        a_times.append(run_chain(app, done, n, worker))
                    else:
                        wall, store = run_orchestration(durable, n, worker)
                        b_times.append(wall)
                        b_store.append(store)
                r_times.append(run_relay(app, done, n, worker))
                print(f"rep {rep + 1} ({order}): a {a_times[-1] * 1000 / n:.2f} ms/step, "
                      f"b {b_times[-1] * 1000 / n:.2f} ms/step "
                      f"(store {b_store[-1] * 1000 / n:.2f}), relay {r_times[-1] * 1000 / n:.2f}",
                      flush=True)
            time.sleep(0.5)
            after = read_counters(counters)
        except BaseException:
            print(worker.log(), file=sys.stderr)
            raise
        finally:
            stop_all([worker])
            durable.store.dispose()
            delete_queue(BROKER_URL, queue)

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000 / n

    a_ms, b_ms, bs_ms, r_ms = ms(a_times), ms(b_times), ms(b_store), ms(r_times)
    steps = REPS * n
    plain = [x - y for x, y in zip(after["tasks"].get(PLAIN_NOOP, [0, 0.0, 0]),
                                   before["tasks"].get(PLAIN_NOOP, [0, 0.0, 0]), strict=True)]
    plain_ms = plain[1] * 1000 / max(plain[0], 1)
    zero = [0, 0.0, 0]
    tasks = {k: [x - y for x, y in zip(v, before["tasks"].get(k, zero), strict=True)]
             for k, v in after["tasks"].items()}
    activity, episode = tasks.get("bench.noop", zero), tasks.get(EPISODE_TASK_NAME, zero)
    per_step = {
        "activity tasks": activity[0] / steps,
        "ms inside the activity task (activity + recording + inline episode)":
            activity[1] * 1000 / steps,
        "SQL statements inside the activity task": activity[2] / steps,
        "episode tasks (broker wake-ups)": episode[0] / steps,
        "ms inside episode tasks": episode[1] * 1000 / steps,
        "SQL statements inside episode tasks": episode[2] / steps,
        "episodes run": (after["episodes"] - before["episodes"]) / steps,
        "events processed": (after["events_processed"] - before["events_processed"]) / steps,
        "cache hits": (after["hits"] - before["hits"]) / steps,
        "cache misses": (after["misses"] - before["misses"]) / steps,
    }
    lines = [
        f"# seq: N={n} sequential no-op steps, {REPS} repetitions (median ms per step)",
        "",
        "Redis broker (db 9), PostgreSQL store, one `celery worker --pool prefork "
        "--concurrency 2`, acks late, prefetch 1.",
        "",
        "| N | a: plain chain | b: orchestration (client wait) | b: store created->completed "
        "| ratio b/a | ratio b(store)/a |",
        "|---|---|---|---|---|---|",
        f"| {n} | {a_ms:.2f} | {b_ms:.2f} | {bs_ms:.2f} | {b_ms / a_ms:.2f} "
        f"| {bs_ms / a_ms:.2f} |",
        "",
        "Per repetition (ms/step): a " + ", ".join(f"{t * 1000 / n:.2f}" for t in a_times)
        + "; b " + ", ".join(f"{t * 1000 / n:.2f}" for t in b_times)
        + "; b store " + ", ".join(f"{t * 1000 / n:.2f}" for t in b_store),
        "",
        "Reference (not part of the ratio): a plain relay, each task sending the next (one hop "
        "per step without a chain's growing payload of remaining signatures): "
        f"{r_ms:.2f} ms/step; b/relay {b_ms / r_ms:.2f}, b(store)/relay {bs_ms / r_ms:.2f}. "
        "Run after a and b in each repetition.",
        f"Plain no-op task, ms inside the task (signals to signals): "
        f"{plain_ms:.3f} per task.",
        "",
        "Worker counters per orchestration step (all pool processes, measured repetitions "
        "only):",
        "",
        "| counter | per step |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in per_step.items()],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
