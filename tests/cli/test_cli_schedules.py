"""``durable schedules`` and ``durable schedule create|show|pause|resume|trigger|delete``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery import Celery
from durable_cli_helpers import assert_one_line_error, invoke

from celery_durable import Durable


@pytest.fixture
def app(tmp_path: Path) -> Celery:
    app = Celery("cli-schedules", broker="memory://", set_as_current=False)
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    durable.store.create_schema()
    return app


def test_create_list_pause_resume_trigger_delete(app: Celery) -> None:
    result = invoke(app, "schedules")
    assert result.exit_code == 0 and "No schedules" in result.stdout
    result = invoke(app, "schedule", "create", "nightly", "reports.build", "--cron",
                    "CRON_TZ=Europe/Paris 0 3 * * *", "--input", '{"full": true}',
                    "--overlap", "buffer_one", "--catchup-window", "3600")
    assert result.exit_code == 0, result.output
    assert "nightly" in result.stdout and "cron CRON_TZ=Europe/Paris 0 3 * * *" in result.stdout
    result = invoke(app, "schedule", "create", "often", "reports.ping", "--every", "30")
    assert result.exit_code == 0, result.output
    listed = json.loads(invoke(app, "schedules", "--json").stdout)
    assert [s["schedule_id"] for s in listed] == ["nightly", "often"]
    assert listed[0]["input"] == {"full": True} and listed[0]["overlap"] == "buffer_one"
    assert listed[0]["catchup_window_seconds"] == 3600 and listed[1]["interval_seconds"] == 30
    assert listed[0]["next_run_at"].endswith(("T01:00:00+00:00", "T02:00:00+00:00"))
    table = invoke(app, "schedules").stdout.splitlines()
    assert table[0].split()[:3] == ["SCHEDULE", "ID", "ORCHESTRATOR"]
    assert "every 30s" in table[2]
    paused = json.loads(invoke(app, "schedule", "pause", "often", "--json").stdout)
    assert paused["paused"] is True
    assert json.loads(invoke(app, "schedule", "resume", "often", "--json").stdout)["paused"] \
        is False
    result = invoke(app, "schedule", "trigger", "often")
    assert result.exit_code == 0 and result.stdout.startswith("Started often@")
    shown = json.loads(invoke(app, "schedule", "show", "often", "--json").stdout)
    assert shown["runs"] == 1 and shown["last_instance_id"].endswith("-trigger")
    result = invoke(app, "schedule", "delete", "often")
    assert result.exit_code == 0 and "Deleted schedule often" in result.stdout
    assert [s["schedule_id"] for s in json.loads(invoke(app, "schedules", "--json").stdout)] \
        == ["nightly"]


def test_errors_are_one_line(app: Celery) -> None:
    assert_one_line_error(invoke(app, "schedule", "pause", "nope"), "no schedule has id 'nope'")
    assert_one_line_error(invoke(app, "schedule", "create", "x", "o", "--cron", "0 3 * *"),
                          "five fields")
    assert_one_line_error(invoke(app, "schedule", "create", "x", "o"), "exactly one of interval")
    assert_one_line_error(invoke(app, "schedule", "create", "x", "o", "--every", "5",
                                 "--start-at", "tomorrow"), "--start-at must be an ISO 8601")
