"""``durable purge`` with filters (and still with an ID), on the embedded SQLite worker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import click
import pytest
from durable_cli_helpers import assert_one_line_error, invoke

from celery_durable import OrchestrationStatus
from celery_durable.cli_purge import parse_time

COMPLETED, FAILED = OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED


def _run(harness: Any, name: str, input: Any = None) -> str:
    iid = harness.client.schedule_new_orchestration(name, input=input)
    harness.client.wait_for_orchestration_completion(iid, timeout=30)
    return str(iid)


def _exists(harness: Any, iid: str) -> bool:
    return harness.client.get_orchestration_state(iid) is not None


def test_purge_by_status_and_creation_time(cli_harness: Any) -> None:
    done = [_run(cli_harness, "e2e.sequence", 1) for _ in range(3)]
    failed = _run(cli_harness, "e2e.uncaught_failure")
    waiting = cli_harness.client.schedule_new_orchestration("e2e.waits_forever")
    dry = invoke(cli_harness.app, "purge", "--status", "COMPLETED", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("Would purge 3 instance(s) (COMPLETED)")
    assert all(_exists(cli_harness, iid) for iid in done)
    # created after now: none
    none = invoke(cli_harness.app, "purge", "--created-after", "2999-01-01")
    assert none.exit_code == 0 and none.stdout.startswith("Purged 0 instance(s)")
    result = invoke(cli_harness.app, "purge", "--status", "completed", "--created-before", "0s")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Purged 3 instance(s) in ")
    assert not any(_exists(cli_harness, iid) for iid in done)
    assert _exists(cli_harness, failed) and _exists(cli_harness, waiting)
    result = invoke(cli_harness.app, "purge", "--created-before", "1w", "--status", "FAILED")
    assert result.stdout.startswith("Purged 0 instance(s)")  # created just now
    result = invoke(cli_harness.app, "purge", "--created-after", "1h")  # every end status
    assert result.stdout.startswith("Purged 1 instance(s)")
    assert not _exists(cli_harness, failed) and _exists(cli_harness, waiting)
    cli_harness.client.terminate_orchestration(waiting)


def test_purge_by_id_still_works(cli_harness: Any) -> None:
    iid = _run(cli_harness, "e2e.sequence", 1)
    result = invoke(cli_harness.app, "purge", iid)
    assert result.exit_code == 0 and result.stdout.strip() == "Purged 1 instance(s)."


@pytest.mark.parametrize(("args", "fragments"), [
    ([], ["give an instance ID, or at least one filter"]),
    (["some-id", "--status", "FAILED"], ["give an instance ID or filters"]),
    (["--status", "RUNNING"], ["only ended instances can be purged", "RUNNING"]),
    (["--status", "DONE"], ["unknown status 'DONE'"]),
    (["--created-before", "last tuesday"], ["--created-before must be an ISO 8601 time",
                                            "30d"]),
])
def test_purge_errors(cli_harness: Any, args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(invoke(cli_harness.app, "purge", *args), *fragments)


def test_times() -> None:
    now = datetime(2030, 1, 31, 12, tzinfo=timezone.utc)
    assert parse_time("30d", "--x", now) == now - timedelta(days=30)
    assert parse_time("1.5h", "--x", now) == now - timedelta(hours=1.5)
    assert parse_time("2030-01-01", "--x", now) == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert parse_time("2030-01-01T10:00:00+02:00", "--x", now) == datetime(
        2030, 1, 1, 8, tzinfo=timezone.utc)
    assert parse_time(None, "--x", now) is None
    with pytest.raises(click.ClickException):
        parse_time("soon", "--x", now)
