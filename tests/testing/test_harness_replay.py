"""The replay check: ``celery_durable.testing.replay`` and ``celery durable replay / export``.

Histories are recorded with version 1 of an order workflow (in the test environment), then
replayed on changed code: a swapped activity and an unguarded added step are caught, naming what
history had and what the code did; a change guarded by ``ctx.version_at_least`` passes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from celery_durable import Durable, NonDeterminismError
from celery_durable.cli import durable as durable_group
from celery_durable.testing import DurableTestEnv, HistoryExport, check, load_histories, replay

RESERVE, CHARGE, NOTIFY, REFUND = (f"harness.replay.{n}" for n in
                                   ("reserve", "charge", "notify", "refund"))
ORDER = "harness.replay.order"


def order_v1(ctx, total):
    yield ctx.call_activity(RESERVE, input=total)
    receipt = yield ctx.call_activity(CHARGE, input=total)
    yield ctx.wait_for_external_event("shipped")
    return receipt


def order_swapped(ctx, total):
    yield ctx.call_activity(RESERVE, input=total)
    receipt = yield ctx.call_activity(REFUND, input=total)  # was CHARGE
    yield ctx.wait_for_external_event("shipped")
    return receipt


def order_added_step(ctx, total):
    yield ctx.call_activity(RESERVE, input=total)
    yield ctx.call_activity(NOTIFY, input=total)  # new, unguarded
    receipt = yield ctx.call_activity(CHARGE, input=total)
    yield ctx.wait_for_external_event("shipped")
    return receipt


def order_guarded(ctx, total):
    yield ctx.call_activity(RESERVE, input=total)
    if ctx.version_at_least("2"):
        yield ctx.call_activity(NOTIFY, input=total)
    receipt = yield ctx.call_activity(CHARGE, input=total)
    yield ctx.wait_for_external_event("shipped")
    return receipt


def order_parallel_notify(ctx, total):
    yield ctx.call_activity(RESERVE, input=total)
    receipt = ctx.call_activity(CHARGE, input=total)
    notified = ctx.call_activity(NOTIFY, input=total)  # new, next to the charge
    yield ctx.when_all([receipt, notified])
    yield ctx.wait_for_external_event("shipped")
    return receipt.get_result()


def order_stops_early(ctx, total):
    yield ctx.call_activity(RESERVE, input=total)
    return (yield ctx.call_activity(CHARGE, input=total))


def order_raises_at_the_end(ctx, total):
    receipt = yield from order_v1(ctx, total)
    raise ValueError(f"no receipt format for {receipt}")


def _echo_activity(name: str) -> Any:
    def run(ctx, total):
        return f"{name} {total}"

    return run


def app_with(order: Any, version: str, url: str) -> Celery:
    """A Celery app whose Durable (on ``url``) registers ``order`` and the activities."""
    app = Celery(f"harness-replay-{order.__name__}", set_as_current=False)
    found = Durable(app, store_url=url)
    for name in (RESERVE, CHARGE, NOTIFY, REFUND):
        found.activity(name=name)(_echo_activity(name))
    found.orchestrator(name=ORDER, version=version)(order)
    return app


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A store with three version-1 orders (one completed, two waiting for 'shipped') and one
    version-2 order, recorded in the test environment."""
    url = f"sqlite:///{tmp_path_factory.mktemp('replay') / 'store.sqlite3'}"
    ids: dict[str, Any] = {"url": url}
    with DurableTestEnv(url, app=app_with(order_v1, "1", url), purge_on_close=False) as env:
        for n in (1, 2, 3):
            env.schedule_new_orchestration(ORDER, input=n, instance_id=f"order-{n}")
        env.raise_orchestration_event("order-1", "shipped")
        assert env.get_orchestration_state("order-1").runtime_status.value == "COMPLETED"
    with DurableTestEnv(url, app=app_with(order_guarded, "2", url), purge_on_close=False) as env:
        env.schedule_new_orchestration(ORDER, input=4, instance_id="order-4")
        ids["v2 history"] = env.get_orchestration_history("order-4")
    yield ids


def history_of(url: str, instance_id: str) -> str:
    result = invoke(app_with(order_v1, "1", url), "export", instance_id)
    assert result.exit_code == 0, result.output
    return result.stdout


def invoke(app: Celery, *args: str) -> Result:
    return CliRunner().invoke(durable_group, list(args),
                              obj=CLIContext(app=app, no_color=True, workdir=None))


# -- replay() in a unit test -------------------------------------------------------------------

def test_unchanged_and_version_guarded_code_replays(store: dict[str, Any]) -> None:
    for iid in ("order-1", "order-2"):
        history = history_of(store["url"], iid)
        assert replay(history, order_v1).ok
        assert replay(history, order_guarded).events == len(json.loads(history)["history"])
    assert replay(store["v2 history"], order_guarded).ok  # the new version replays too
    with pytest.raises(NonDeterminismError):
        replay(store["v2 history"], order_v1)


def test_a_swapped_activity_is_caught(store: dict[str, Any]) -> None:
    with pytest.raises(NonDeterminismError) as caught:
        replay(history_of(store["url"], "order-2"), order_swapped)
    assert str(caught.value) == (
        "instance 'order-2' (harness.replay.order) does not replay on this code: history has "
        "TaskScheduled 'harness.replay.charge' (task 1) at seq 3 but the code scheduled "
        "activity 'harness.replay.refund' (task 1)")


def test_an_unguarded_added_step_is_caught(store: dict[str, Any]) -> None:
    with pytest.raises(NonDeterminismError, match=(
            r"history has TaskScheduled 'harness.replay.charge' \(task 1\) at seq 3 but the "
            r"code scheduled activity 'harness.replay.notify' \(task 1\)")):
        replay(history_of(store["url"], "order-1"), order_added_step)


def test_code_that_goes_on_or_stops_where_history_does_not(store: dict[str, Any]) -> None:
    running = load_histories(history_of(store["url"], "order-2"))[0]
    charging = HistoryExport(running.instance_id, running.name, running.events[:4])
    assert [e.kind for e in charging.events][-1] == "TaskScheduled"  # the charge is running
    assert check(charging, order_v1).ok
    result = check(charging, order_parallel_notify)
    assert result.divergence == (
        "history ends with TaskScheduled 'harness.replay.charge' (task 1) at seq 3 but the code "
        "goes on: TaskScheduled 'harness.replay.notify' (task 2)")
    ended = check(running, order_stops_early)
    assert ended.divergence == ("history ends with TaskCompleted (task 1) at seq 4 but the code "
                                "ends the execution there (COMPLETED)")
    completed = load_histories(history_of(store["url"], "order-1"))[0]
    assert check(completed, order_raises_at_the_end).divergence.startswith(
        "history ends the execution COMPLETED but the code ends it FAILED (ValueError: no "
        "receipt format")


def test_history_forms(store: dict[str, Any], tmp_path: Path) -> None:
    text = history_of(store["url"], "order-2")
    document = json.loads(text)
    path = tmp_path / "order-2.json"
    path.write_text(text)
    for form in (text, text.encode(), document, document["history"], path, [document]):
        (export,) = load_histories(form)
        assert export.name == ORDER and len(export.events) == 5
    assert load_histories(store["v2 history"])[0].name == ORDER
    with pytest.raises(ValueError, match="must be JSON"):
        load_histories("{not json")
    with pytest.raises(ValueError, match="expected a history export"):
        load_histories({"events": []})
    with pytest.raises(ValueError, match="checks one history, got 2"):
        replay([document, document], order_v1)
    assert check(load_histories({"history": []})[0], order_v1).ok  # nothing to disagree with


# -- the commands ------------------------------------------------------------------------------

def table_rows(url: str) -> dict[str, list[Any]]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in tables}


def test_replay_command_passes_the_unchanged_and_guarded_code(store: dict[str, Any]) -> None:
    before = table_rows(store["url"])
    result = invoke(app_with(order_guarded, "2", store["url"]), "replay")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("harness.replay.order: 4 of 4 replay cleanly\n"
                             "Every history replays cleanly.\n")
    assert table_rows(store["url"]) == before  # replay writes nothing


def test_replay_command_reports_divergences_and_fails(store: dict[str, Any]) -> None:
    before = table_rows(store["url"])
    result = invoke(app_with(order_swapped, "1", store["url"]), "replay", "--status", "running")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "harness.replay.order: 0 of 3 replay cleanly",
        "  order-2: history has TaskScheduled 'harness.replay.charge' (task 1) at seq 3 but the "
        "code scheduled activity 'harness.replay.refund' (task 1)",
        "  order-3: history has TaskScheduled 'harness.replay.charge' (task 1) at seq 3 but the "
        "code scheduled activity 'harness.replay.refund' (task 1)",
        "  order-4: history has TaskScheduled 'harness.replay.notify' (task 1) at seq 3 but the "
        "code scheduled activity 'harness.replay.refund' (task 1)"]
    assert result.stderr.startswith("Error: 3 of 3 histories diverge from the code")
    limited = invoke(app_with(order_swapped, "1", store["url"]), "replay", "--limit", "1",
                     "--name", ORDER, "--status", "completed")
    assert limited.exit_code == 1 and "0 of 1 replay cleanly\n  order-1:" in limited.stdout
    nothing = invoke(app_with(order_swapped, "1", store["url"]), "replay", "--name", "other")
    assert nothing.exit_code == 0 and nothing.stdout == "No histories to replay.\n"
    assert table_rows(store["url"]) == before


def test_export_then_replay_from_files_without_the_store(store: dict[str, Any],
                                                         tmp_path: Path) -> None:
    app = app_with(order_v1, "1", store["url"])
    for iid, events in (("order-1", 7), ("order-2", 5)):
        result = invoke(app, "export", iid, "--out", str(tmp_path / f"{iid}.json"))
        assert result.exit_code == 0, result.output
        assert result.stdout == f"Wrote {events} events of {iid} to {tmp_path / iid}.json.\n"
    elsewhere = f"sqlite:///{tmp_path / 'absent.sqlite3'}"  # a store the files do not need
    files = ["--from-file", str(tmp_path / "order-1.json"), "--from-file",
             str(tmp_path / "order-2.json")]
    clean = invoke(app_with(order_guarded, "2", elsewhere), "replay", *files)
    assert clean.exit_code == 0 and "2 of 2 replay cleanly" in clean.stdout, clean.output
    bad = invoke(app_with(order_added_step, "2", elsewhere), "replay", *files)
    assert bad.exit_code == 1 and "0 of 2 replay cleanly" in bad.stdout
    assert not (tmp_path / "absent.sqlite3").exists()


def test_replay_pages_through_the_store(store: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from celery_durable import cli_replay

    monkeypatch.setattr(cli_replay, "_PAGE", 2)
    app = app_with(order_guarded, "2", store["url"])
    for limit, replayed in (("3", 3), ("4", 4), ("9", 4)):
        result = invoke(app, "replay", "--limit", limit)
        assert result.exit_code == 0, result.output
        assert f": {replayed} of {replayed} replay cleanly" in result.stdout


def test_an_orchestrator_missing_from_the_code_diverges(store: dict[str, Any]) -> None:
    app = Celery("harness-replay-empty", set_as_current=False)
    Durable(app, store_url=store["url"])
    result = invoke(app, "replay", "--name", ORDER, "--limit", "2")
    assert result.exit_code == 1
    assert "  order-1: no orchestrator is registered as 'harness.replay.order' in this code " \
           "(renamed or removed?)" in result.stdout


def test_command_errors(store: dict[str, Any], tmp_path: Path) -> None:
    app = app_with(order_v1, "1", store["url"])
    missing = invoke(app, "export", "nope")
    assert missing.exit_code == 1 and "no orchestration instance has id 'nope'" in missing.stderr
    limit = invoke(app, "replay", "--limit", "0")
    assert limit.exit_code == 1 and "--limit must be from 1 to 1000000" in limit.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    result = invoke(app, "replay", "--from-file", str(junk))
    assert result.exit_code == 1 and "cannot read histories from" in result.stderr
    exported = invoke(app, "export", "order-2")
    assert json.loads(exported.stdout)["status"] == "RUNNING"
