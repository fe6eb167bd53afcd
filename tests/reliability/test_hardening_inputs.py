"""Issue 16 outside the dashboard, one table per finding: every stored value checked as payloads
are (4), deep nesting and extreme dates refused with package errors (6), secrets in store URLs
masked (7), stored text escaped on the operator's terminal (8), a warning for workers that
accept pickle (9). No worker: instances stay PENDING, the store is dumped around each case."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import edge_workflows as ew
import pytest
import sqlalchemy as sa
from celery import Celery, _state
from celery.bin.base import CLIContext
from click.testing import CliRunner
from edge_cluster import dump

from celery_durable import (
    Durable,
    DurableClient,
    InvalidNameError,
    PayloadError,
    PayloadTooLargeError,
)
from celery_durable.cli import durable as durable_cli
from celery_durable.store.engine import masked_url
from celery_durable.store.schema import history, instances

LIMIT = 10_000  # durable_max_payload_bytes of these tests


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Durable, str]]:
    """A Durable on SQLite (memory broker, no worker) and one live (PENDING) instance."""
    url = f"sqlite:///{tmp_path_factory.mktemp('hardening') / 'store.sqlite3'}"
    app = Celery("hardening", broker="memory://", set_as_current=False)
    app.conf.durable_max_payload_bytes = LIMIT
    durable = Durable(app, store_url=url)
    try:
        yield durable, durable.client.schedule_new_orchestration(ew.wait_event, input="e")
    finally:
        durable.store.dispose()


START = datetime(2026, 1, 1, tzinfo=timezone.utc)
EXTREME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
REFUSED: list[tuple[str, Callable[[DurableClient, str], Any], type[Exception], str]] = [
    # (what, call, error, words): 4. values stored besides payloads
    ("suspend reason over the limit", lambda c, i: c.suspend_orchestration(
        i, reason="r" * LIMIT), PayloadTooLargeError, "the reason to suspend is 10,002 bytes"),
    ("resume reason over the limit", lambda c, i: c.resume_orchestration(
        i, reason="r" * LIMIT), PayloadTooLargeError, "the reason to resume is"),
    ("reason not a string", lambda c, i: c.suspend_orchestration(i, reason=b"x"),  # type: ignore[arg-type]
     TypeError, "must be a string or None"),
    ("tags over the limit", lambda c, i: c.schedule_new_orchestration(
        ew.wait_event, tags={"t": "v" * LIMIT}), PayloadTooLargeError, "tags is"),
    ("tag name with an escape", lambda c, i: c.schedule_new_orchestration(
        ew.wait_event, tags={"\x1b]0;x\x07": "v"}), InvalidNameError, "a tag name must be"),
    ("tag name too long", lambda c, i: c.schedule_new_orchestration(
        ew.wait_event, tags={"t" * 257: "v"}), InvalidNameError, "1 to 256 characters"),
    ("tag value not a string", lambda c, i: c.schedule_new_orchestration(
        ew.wait_event, tags={"t": 1}), TypeError, "tags must be a dict of str to str"),  # type: ignore[dict-item]
    # 6. deep nesting and extreme dates: package errors, not RecursionError / OverflowError
    ("event data nested 10,000 deep", lambda c, i: c.raise_orchestration_event(
        i, "e", data=nested(10_000)), PayloadError, "nested 128 lists or objects deep"),
    ("input nested 200 deep", lambda c, i: c.schedule_new_orchestration(
        ew.wait_event, input=nested(200)), PayloadError, "pass values nested less than 128"),
    ("termination output nested", lambda c, i: c.terminate_orchestration(
        i, output=nested(5_000)), PayloadError, "nested 128"),
    ("start_at past year 9999 in UTC", lambda c, i: c.schedule_new_orchestration(
        ew.wait_event, start_at=EXTREME), ValueError, "past the last time a datetime holds"),
]


@pytest.mark.parametrize(("what", "call", "error", "words"), REFUSED,
                         ids=[case[0] for case in REFUSED])
def test_bad_values_are_refused_and_change_nothing(
        setup: tuple[Durable, str], what: str, call: Callable[[DurableClient, str], Any],
        error: type[Exception], words: str) -> None:
    durable, live = setup
    before = dump(durable.store)
    with pytest.raises(error) as raised:
        call(durable.client, live)
    assert type(raised.value) is error, f"{type(raised.value).__name__}: {raised.value}"
    assert words in str(raised.value), str(raised.value)
    assert dump(durable.store) == before


def test_values_within_the_limits_are_accepted(setup: tuple[Durable, str]) -> None:
    durable, live = setup
    durable.client.suspend_orchestration(live, reason="r" * (LIMIT - 2))
    durable.client.raise_orchestration_event(live, "e", data=nested(127))
    iid = durable.client.schedule_new_orchestration(ew.wait_event, tags={"team": "ops"},
                                                    start_at=START)
    assert durable.client.get_orchestration_state(iid).tags == {"team": "ops"}


# -- 7. secrets in store URLs ----------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://shop:p@ss@db/shop", "postgresql+psycopg://shop:***@db/shop"),
    ("postgresql+psycopg://shop:p@s@s@db:5432/shop", "postgresql+psycopg://shop:***@db:5432/shop"),
    ("postgresql+psycopg://db/shop?user=shop&password=hunter2",
     "postgresql+psycopg://db/shop?user=shop&password=***"),
    ("mysql+pymysql://shop@db/shop?ssl_key=/k&sslpassword=hunter2&charset=utf8mb4",
     "mysql+pymysql://shop@db/shop?ssl_key=***&sslpassword=***&charset=utf8mb4"),
    ("postgresql://shop:hunter2@db/shop?sslmode=require",
     "postgresql://shop:***@db/shop?sslmode=require"),
    ("nosuchdb://u:hun@ter2@host/db", "nosuchdb://u:***@host/db"),
    ("sqlite:////var/lib/app@2/store.db", "sqlite:////var/lib/app@2/store.db"),
    ("not a url hunter2", "(a string that is not a URL)"),
])
def test_store_url_secrets_are_masked(url: str, shown: str) -> None:
    assert masked_url(url) == shown
    assert "hunter2" not in masked_url(url) and "ter2" not in masked_url(url)


# -- 8. terminal escapes ---------------------------------------------------------------------------

TITLE = "\x1b]0;pwned\x07"
ESCAPES = [
    ("input", {"input": f"{TITLE}order"}, "show", "\\x1b]0;pwned\\x07order"),
    ("failure message", {"failure": json.dumps({"error_type": "ValueError",
                                                 "message": f"bad {TITLE}\x1b[2J"})},
     "show", "bad \\x1b]0;pwned\\x07\\x1b[2J"),
    ("custom status", {"custom_status": json.dumps(f"\x9b31m{TITLE}")}, "show",
     "\\x9b31m\\x1b]0;pwned\\x07"),
    ("bidi override in a tag", {"tags": json.dumps({"t": "abc\u202edcba"})}, "show",
     "abc\\u202edcba"),
    ("history event name", {}, "history", "tick\\x1b]0;pwned\\x07"),
]


@pytest.mark.parametrize(("what", "row", "command", "escaped"), ESCAPES,
                         ids=[case[0] for case in ESCAPES])
def test_stored_text_is_escaped_on_the_terminal(setup: tuple[Durable, str], what: str,
                                                row: dict[str, Any], command: str,
                                                escaped: str) -> None:
    durable, _ = setup
    iid = durable.client.schedule_new_orchestration(ew.wait_event, input="x")
    record = durable.store.get_instance(iid)
    assert record is not None
    with durable.store.engine.begin() as conn:
        if "input" in row:
            row = {"input": json.dumps(row["input"])}
        if row:
            conn.execute(sa.update(instances).where(instances.c.instance_id == iid).values(row))
        conn.execute(sa.insert(history).values(
            instance_id=iid, execution_id=record.execution_id, seq=0, kind="EventRaised",
            timestamp=record.created_at, task_id=None, name=f"tick{TITLE}", data="null"))
    obj = CLIContext(app=durable.app, no_color=True, workdir=None)
    result = CliRunner().invoke(durable_cli, [command, iid], obj=obj)
    assert result.exit_code == 0, result.output
    assert escaped in result.stdout, result.stdout
    assert not any(ch in result.stdout for ch in "\x1b\x07\x9b\u202e")
    as_json = CliRunner().invoke(durable_cli, [command, iid, "--json"], obj=obj)
    assert "\x1b" not in as_json.stdout  # JSON escapes them itself


# -- 9. pickle -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "warned"), [
    ({"accept_content": ["json", "pickle"]}, "accept_content includes pickle"),
    ({"accept_content": ["application/x-python-serialize"]}, "accept_content"),
    ({"result_accept_content": ["pickle"]}, "result_accept_content includes pickle"),
    ({"accept_content": "pickle"}, "accept_content"),
    ({"accept_content": ["json"]}, None),
    ({}, None),
])
def test_a_worker_that_accepts_pickle_warns_at_start(
        settings: dict[str, Any], warned: str | None, caplog: pytest.LogCaptureFixture,
        tmp_path: Any) -> None:
    app = Celery("pickled", broker="memory://", set_as_current=False)
    app.conf.update(settings)
    Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    # building a worker sets process-wide state (result.get() then refuses to block, as in a
    # task): restored afterwards, so that later tests in this process are not run "in a task"
    join_will_block = _state.task_join_will_block()
    try:
        with caplog.at_level(logging.WARNING, logger="celery_durable.security"):
            app.WorkController(pool_cls="solo", concurrency=1, without_heartbeat=True,
                               without_mingle=True, without_gossip=True)
    finally:
        _state._set_task_join_will_block(join_will_block)
    messages = [r.getMessage() for r in caplog.records if r.name == "celery_durable.security"]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warned in messages[0], messages
        assert "anyone who can publish to the broker can run code" in messages[0]
