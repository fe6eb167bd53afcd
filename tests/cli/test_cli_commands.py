"""Every ``celery durable`` command, table and --json, on a real worker (sqlite-filesystem)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from celery import Celery
from durable_cli_helpers import assert_one_line_error, invoke

from celery_durable import OrchestrationStatus

Status = OrchestrationStatus


def _wait_status(harness: Any, iid: str, status: Status, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while harness.client.get_orchestration_state(iid).runtime_status is not status:
        assert time.monotonic() < deadline, f"{iid} did not reach {status}"
        time.sleep(0.02)


def _start(harness: Any, name: str, *args: str) -> str:
    result = invoke(harness.app, "start", name, *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def _table(stdout: str) -> tuple[list[str], list[list[str]]]:
    lines = stdout.rstrip("\n").splitlines()
    return lines[0].split("  "), [line.split() for line in lines[1:]]


# -- start, show, list, history ----------------------------------------------------------------

def test_start_prints_the_id_and_the_worker_runs_it(cli_harness: Any) -> None:
    iid = _start(cli_harness, "e2e.sequence", "--input", "4", "--id", "cli-seq-1")
    assert iid == "cli-seq-1"
    state = cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == 6

    as_json = invoke(cli_harness.app, "start", "e2e.sequence",
                     "--input", "1", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert set(json.loads(as_json.stdout)) == {"instance_id"}


def test_start_wait_prints_the_final_state(cli_harness: Any) -> None:
    result = invoke(cli_harness.app, "start", "e2e.sequence", "--input", "3", "--wait", "30",
                    "--version", "1.2")
    assert result.exit_code == 0, result.output
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["status"].strip() == "COMPLETED"
    assert fields["output"].strip() == "3"
    assert fields["version"].strip() == "1.2"

    as_json = invoke(cli_harness.app, "start", "e2e.fan_out", "--input", "3", "--wait", "30",
                     "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["status"] == "COMPLETED" and data["output"] == 3 and data["input"] == 3


def test_start_wait_exits_non_zero_unless_completed(cli_harness: Any) -> None:
    result = invoke(cli_harness.app, "start", "e2e.uncaught_failure", "--wait", "30")
    assert "status:" in result.stdout and "FAILED" in result.stdout
    assert_one_line_error(result, "ended FAILED", "ValueError: kaput")


def test_show_table_and_json(cli_harness: Any) -> None:
    iid = _start(cli_harness, "e2e.custom_status", "--input", '{"k": [1, 2]}')
    _wait_status(cli_harness, iid, Status.RUNNING)
    deadline = time.monotonic() + 10
    while cli_harness.client.get_orchestration_state(iid).custom_status is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)

    table = invoke(cli_harness.app, "show", iid)
    assert table.exit_code == 0, table.output
    fields = {k.strip(): v.strip() for k, v in
              (line.split(":", 1) for line in table.stdout.splitlines())}
    assert fields["instance id"] == iid
    assert fields["name"] == "e2e.custom_status"
    assert fields["status"] == "RUNNING"
    assert fields["input"] == '{"k":[1,2]}'
    assert fields["custom status"] == '{"step":1}'
    assert fields["output"] == "-" and fields["failure"] == "-"
    assert fields["inbox"] == "0 event(s) waiting"

    data = json.loads(invoke(cli_harness.app, "show", iid, "--json").stdout)
    assert data["instance_id"] == iid and data["status"] == "RUNNING"
    assert data["input"] == {"k": [1, 2]} and data["custom_status"] == {"step": 1}
    assert data["parent_instance_id"] is None and data["inbox"] == 0
    cli_harness.client.raise_orchestration_event(iid, "next")
    cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)


def test_list_table_json_and_filters(cli_harness: Any) -> None:
    ids = [_start(cli_harness, "e2e.sequence", "--input", "1") for _ in range(3)]
    waiting = _start(cli_harness, "e2e.waits_forever")
    for iid in ids:
        cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    _wait_status(cli_harness, waiting, Status.RUNNING)

    table = invoke(cli_harness.app, "list", "--limit", "10000")
    assert table.exit_code == 0, table.output
    header, rows = _table(table.stdout)
    assert [h.strip() for h in header if h.strip()] == [
        "INSTANCE ID", "NAME", "VERSION", "STATUS", "CREATED (UTC)", "UPDATED (UTC)"]
    by_id = {row[0]: row for row in rows}
    assert by_id[ids[0]][1:4] == ["e2e.sequence", "-", "COMPLETED"]
    assert by_id[waiting][3] == "RUNNING"
    lines = table.stdout.splitlines()  # columns are aligned: every status starts at one offset
    offset = lines[0].index("STATUS")
    assert all(line[offset:].split()[0] in {"STATUS", *Status.__members__} for line in lines)

    running = json.loads(invoke(cli_harness.app, "list", "--status", "running", "--name",
                                "e2e.waits_forever", "--json").stdout)
    assert waiting in [item["instance_id"] for item in running]
    assert {item["status"] for item in running} == {"RUNNING"}
    assert {item["name"] for item in running} == {"e2e.waits_forever"}

    several = json.loads(invoke(cli_harness.app, "list", "--status", "RUNNING,completed",
                                "--json", "--limit", "10000").stdout)
    assert {ids[0], waiting} <= {item["instance_id"] for item in several}

    limited = invoke(cli_harness.app, "list", "--limit", "1", "--json")
    assert limited.exit_code == 0
    assert len(json.loads(limited.stdout)) == 1
    assert "raise --limit" in limited.stderr

    none = invoke(cli_harness.app, "list", "--name", "no.such.orchestrator")
    assert none.exit_code == 0 and none.stdout.strip() == "No orchestration instances match."
    assert json.loads(invoke(cli_harness.app, "list", "--name", "nobody", "--json").stdout) == []
    invoke(cli_harness.app, "terminate", waiting)


def test_history_table_and_json(cli_harness: Any) -> None:
    iid = _start(cli_harness, "e2e.wait_event", "--input", '["a"]')
    _wait_status(cli_harness, iid, Status.RUNNING)
    long_data = {"text": "x" * 200}
    raised = invoke(cli_harness.app, "raise", iid, "a", "--data", json.dumps(long_data))
    assert raised.exit_code == 0, raised.output
    cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    seq = _start(cli_harness, "e2e.sequence", "--input", "2")
    cli_harness.client.wait_for_orchestration_completion(seq, timeout=30)

    table = invoke(cli_harness.app, "history", iid)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "KIND", "TASK", "ID", "NAME", "TIME", "(UTC)", "DATA"]
    raised_line = next(line for line in lines if "EventRaised" in line)
    assert raised_line.split()[:4] == ["1", "EventRaised", "-", "a"]
    assert raised_line.endswith("...") and "x" * 200 not in raised_line

    rows = _table(invoke(cli_harness.app, "history", seq).stdout)[1]
    assert [(row[1], row[2]) for row in rows if row[1].startswith("Task")] == [
        ("TaskScheduled", "0"), ("TaskCompleted", "0"),
        ("TaskScheduled", "1"), ("TaskCompleted", "1")]

    events = json.loads(invoke(cli_harness.app, "history", iid, "--json").stdout)
    assert [e["kind"] for e in events] == ["ExecutionStarted", "EventRaised",
                                           "ExecutionCompleted"]
    assert events[1]["name"] == "a" and events[1]["data"] == long_data
    assert [e["seq"] for e in events] == [0, 1, 2]


# -- steering ------------------------------------------------------------------------------------

def test_raise_delivers_event_data(cli_harness: Any) -> None:
    iid = _start(cli_harness, "e2e.wait_event", "--input", '["go", "again"]')
    assert invoke(cli_harness.app, "raise", iid, "go", "--data", '{"x": 1}').exit_code == 0
    result = invoke(cli_harness.app, "raise", iid, "again")
    assert result.exit_code == 0 and result.stdout.strip() == f"Raised 'again' to {iid}."
    state = cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == [{"x": 1}, None]


def test_suspend_and_resume(cli_harness: Any) -> None:
    iid = _start(cli_harness, "e2e.wait_event", "--input", '["a"]')
    _wait_status(cli_harness, iid, Status.RUNNING)
    result = invoke(cli_harness.app, "suspend", iid, "--reason", "maintenance")
    assert result.exit_code == 0 and "suspend" in result.stdout
    _wait_status(cli_harness, iid, Status.SUSPENDED)
    assert invoke(cli_harness.app, "raise", iid, "a", "--data", "5").exit_code == 0
    assert invoke(cli_harness.app, "resume", iid, "--reason", "done").exit_code == 0
    state = cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == [5]
    kinds = [e["kind"] for e in json.loads(invoke(cli_harness.app, "history", iid,
                                                  "--json").stdout)]
    assert "ExecutionSuspended" in kinds and "ExecutionResumed" in kinds
    suspended = next(e for e in json.loads(invoke(cli_harness.app, "history", iid,
                                                  "--json").stdout)
                     if e["kind"] == "ExecutionSuspended")
    assert suspended["data"] == {"reason": "maintenance"}


def test_terminate_with_output_and_recursion(cli_harness: Any) -> None:
    iid = _start(cli_harness, "e2e.waits_forever")
    _wait_status(cli_harness, iid, Status.RUNNING)
    result = invoke(cli_harness.app, "terminate", iid, "--output", '"stopped"')
    assert result.exit_code == 0, result.output
    state = cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status is Status.TERMINATED and state.output == "stopped"

    parents = [_start(cli_harness, "e2e.parent_of_waiters", "--input", "2") for _ in range(2)]
    children: dict[str, list[str]] = {}
    for parent in parents:
        deadline = time.monotonic() + 20
        while True:
            found = [i["instance_id"] for i in json.loads(invoke(
                cli_harness.app, "list", "--name", "e2e.waits_forever", "--status", "RUNNING",
                "--json", "--limit", "10000").stdout) if i["parent_instance_id"] == parent]
            if len(found) == 2:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        children[parent] = found
    assert invoke(cli_harness.app, "terminate", parents[0]).exit_code == 0
    assert invoke(cli_harness.app, "terminate", parents[1], "--no-recursive").exit_code == 0
    for parent in parents:
        cli_harness.client.wait_for_orchestration_completion(parent, timeout=30)
    for child in children[parents[0]]:
        cli_harness.client.wait_for_orchestration_completion(child, timeout=30)
    for child in children[parents[1]]:
        assert cli_harness.client.get_orchestration_state(child).runtime_status is \
            Status.RUNNING
        invoke(cli_harness.app, "terminate", child)


def test_purge(cli_harness: Any) -> None:
    iid = _start(cli_harness, "e2e.sequence", "--input", "1")
    cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    result = invoke(cli_harness.app, "purge", iid)
    assert result.exit_code == 0 and result.stdout.strip() == "Purged 1 instance(s)."
    assert_one_line_error(invoke(cli_harness.app, "show", iid), "no orchestration instance")

    parent = _start(cli_harness, "e2e.parent", "--input", "2")
    cli_harness.client.wait_for_orchestration_completion(parent, timeout=30)
    result = invoke(cli_harness.app, "purge", parent, "--no-recursive")
    assert result.stdout.strip() == "Purged 1 instance(s)."


def test_recover_with_nothing_lost_and_a_dry_run(cli_harness: Any) -> None:
    waiting = _start(cli_harness, "e2e.waits_forever")
    _wait_status(cli_harness, waiting, Status.RUNNING)
    dry = invoke(cli_harness.app, "recover", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "examined. Would send:" in dry.stdout and "Dry run: nothing was sent." in dry.stdout
    report = json.loads(invoke(cli_harness.app, "recover", "--json").stdout)
    assert report["dry_run"] is False and report["instances"] >= 1
    assert report["problems"] == []
    invoke(cli_harness.app, "terminate", waiting)
    cli_harness.client.wait_for_orchestration_completion(waiting, timeout=30)


# -- errors: one line on stderr, exit status != 0, no traceback ----------------------------------

ERRORS = [
    (["show", "missing-id"], ["no orchestration instance has id 'missing-id'"]),
    (["history", "missing-id"], ["no orchestration instance has id 'missing-id'"]),
    (["raise", "missing-id", "ev"], ["no orchestration instance"]),
    (["suspend", "missing-id"], ["no orchestration instance"]),
    (["resume", "missing-id"], ["no orchestration instance"]),
    (["terminate", "missing-id"], ["no orchestration instance"]),
    (["purge", "missing-id"], ["no orchestration instance"]),
    (["show", "has space"], ["instance id must be"]),
    (["purge", "x" * 300], ["instance id must be"]),
    (["start", "e2e.sequence", "--id", "bad\tid"], ["instance id must be"]),
    (["start", " e2e.sequence"], ["orchestrator name must be a string"]),
    (["start", "e2e.sequence", "--input", "{not json"], ["--input must be JSON"]),
    (["start", "e2e.sequence", "--input", "1", "--wait", "-1"], ["--wait must be a positive number"]),
    (["start", "e2e.waits_forever", "--wait", "0.2"], ["did not complete within 0.2s"]),
    (["raise", "any", "ev", "--data", "[1,"], ["--data must be JSON"]),
    (["terminate", "any", "--output", "nope"], ["--output must be JSON"]),
    (["list", "--status", "DONE"], ["unknown status 'DONE'", "RUNNING"]),
    (["list", "--limit", "0"], ["--limit must be from 1 to 10000"]),
]


@pytest.mark.parametrize("args,fragments", ERRORS, ids=[" ".join(a)[:40] for a, _ in ERRORS])
def test_errors_are_one_line(cli_harness: Any, args: list[str], fragments: list[str]) -> None:
    result = invoke(cli_harness.app, *args)
    assert_one_line_error(result, *fragments)
    assert result.stdout == ""


def test_state_errors_are_one_line(cli_harness: Any) -> None:
    done = _start(cli_harness, "e2e.sequence", "--input", "1")
    cli_harness.client.wait_for_orchestration_completion(done, timeout=30)
    assert_one_line_error(invoke(cli_harness.app, "raise", done, "late"),
                          "cannot raise an event to", "already ended (COMPLETED)")
    assert_one_line_error(invoke(cli_harness.app, "terminate", done), "already ended")
    running = _start(cli_harness, "e2e.waits_forever", "--id", "cli-running-1")
    _wait_status(cli_harness, running, Status.RUNNING)
    assert_one_line_error(invoke(cli_harness.app, "purge", running),
                          "only COMPLETED, FAILED or TERMINATED")
    assert_one_line_error(invoke(cli_harness.app, "start", "e2e.sequence", "--id", running),
                          "already running")
    invoke(cli_harness.app, "terminate", running)
    cli_harness.client.wait_for_orchestration_completion(running, timeout=30)


def test_app_without_durable_says_so() -> None:
    plain = Celery("plain-app", set_as_current=False)
    for args in (["list"], ["recover"], ["show", "x"]):
        assert_one_line_error(invoke(plain, *args), "'plain-app' has no Durable",
                              "Durable(app)")
    assert invoke(plain, "list", "--help").exit_code == 0


def test_store_errors_are_one_line(tmp_path: Any) -> None:
    from celery_durable import Durable

    app = Celery("bad-store", broker="memory://", set_as_current=False)
    Durable(app, store_url=f"sqlite:///{tmp_path}/missing-folder/store.sqlite3")
    assert_one_line_error(invoke(app, "list"), "the store failed (OperationalError)")
