"""Structural costs of an activity step, counted (never timed), at short and long histories.

A step is what a worker does when an activity of an orchestration finishes: record its
completion and run the next episode inline (lock, read the inbox, feed the engine, commit,
publish the next activity). Counted through the store's SQLAlchemy cursor events
(``store.statement_count()``), with the real runtime driving a 1,200-step sequence in this
process (`perf_driver.InProcessWorker`), so the counts are exact:

- SQL statements per step: a small constant (at most 8), the same at history length ~40 as at
  ~2,400, and no history read on a warm step;
- a cold episode (the state cache lost the instance) loads the history in ONE query;
- the activity message an episode publishes is as large at the end as at the start (the
  timer and sub-orchestration messages are checked in tests/e2e/test_structural_costs.py).
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from kombu.utils.json import dumps as kombu_dumps
from perf_driver import InProcessWorker, Published, is_activity, sequence

from celery_durable import Durable, OrchestrationStatus

STEPS = 1200
EARLY = range(20, 60)
LATE = range(STEPS - 60, STEPS - 20)
MAX_STATEMENTS = 8


def kinds(statements: list[str]) -> list[str]:
    """``SELECT durable_history``, ``INSERT durable_inbox``...: verb and first table of each."""
    out = []
    for statement in statements:
        words = statement.split()
        tables = [w.strip('",();') for w in words if w.strip('",();').startswith("durable_")]
        verb = "WITH" if words[0].upper() == "WITH" else words[0].upper()
        out.append(f"{verb} {tables[0].split('.')[0] if tables else '?'}")
    return out


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")


def size(message: Published) -> int:
    """Bytes of the message's JSON body plus headers, timestamps and the ids Celery copies
    from the running task (``parent_id``, ``root_id``) counted at a fixed width."""
    headers = {**message.headers,
               **{k: "i" * 36 for k in ("parent_id", "root_id") if message.headers.get(k)}}
    text = kombu_dumps(message.body) + json.dumps(headers, default=str, sort_keys=True)
    return len(_TIMESTAMP.sub("T" * 32, text))


def run_sequence(durable: Durable, worker: InProcessWorker) -> tuple[str, list[Any]]:
    """Drive a sequence of STEPS activities; per step: (statements, the message published)."""
    iid = durable.client.schedule_new_orchestration(sequence, input=STEPS)
    worker.step()  # the wake-up: the first episode schedules the first activity
    steps: list[Any] = []
    while worker.queue:
        assert is_activity(worker.queue[0]), worker.queue[0].task
        published = len(worker.published)
        with durable.store.statement_count() as counted:
            worker.step()
        steps.append((counted.statements, worker.published[published:]))
    record = durable.store.get_instance(iid)
    assert record is not None and record.status is OrchestrationStatus.COMPLETED
    assert len(steps) == STEPS
    return iid, steps


def test_statements_per_step_are_constant_and_history_is_read_once(
        durable: Durable, tmp_path: Path) -> None:
    with InProcessWorker(durable).running() as worker:
        iid, steps = run_sequence(durable, worker)
        counts = [len(statements) for statements, _ in steps]
        early = statistics.mean(counts[i] for i in EARLY)
        late = statistics.mean(counts[i] for i in LATE)
        by_kind: dict[str, int] = {}
        for kind in kinds(steps[LATE[0]][0]):
            by_kind[kind] = by_kind.get(kind, 0) + 1
        print(f"{durable.store.dialect}: statements per step early {early:.2f}, late "
              f"{late:.2f} (history ~{2 * STEPS}); a late step: {by_kind}")
        assert max(counts[i] for i in [*EARLY, *LATE]) <= MAX_STATEMENTS, counts
        assert abs(late - early) <= 0.25, f"per-step statements grow with history: {early} -> {late}"
        history_reads = sum(kinds(statements).count("SELECT durable_history")
                            for statements, _ in steps[1:])
        assert history_reads == 0, f"warm steps read the history {history_reads} times"

        # the activity message is as large at history ~2,400 as at ~40
        early_msg = [m for _, out in steps[EARLY[0]:EARLY[0] + 1] for m in out if is_activity(m)]
        late_msg = [m for _, out in steps[LATE[-1]:LATE[-1] + 1] for m in out if is_activity(m)]
        assert early_msg and late_msg
        assert size(late_msg[0]) - size(early_msg[0]) <= 8, (early_msg[0], late_msg[0])

    # a cold episode (another process ran the last ones, or the cache evicted the state)
    # loads the whole history in one query
    with InProcessWorker(durable).running() as worker:
        cold_iid = durable.client.schedule_new_orchestration(sequence, input=STEPS)
        worker.step()
        for _ in range(STEPS // 2):
            worker.step()
        durable.runner.cache.discard(cold_iid)
        history_len = durable.store.get_instance(cold_iid).history_len
        with durable.store.statement_count() as counted:
            worker.step()
        reads = kinds(counted.statements).count("SELECT durable_history")
        print(f"cold step at history {history_len}: {len(counted.statements)} statements, "
              f"{reads} history read(s)")
        assert history_len > STEPS
        assert reads == 1
        assert len(counted.statements) <= MAX_STATEMENTS + 1
    assert iid != cold_iid
