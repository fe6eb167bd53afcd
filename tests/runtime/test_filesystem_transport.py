"""The write-then-rename ``filesystem://`` transport (kombu issue #1551), with real kombu and Celery."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from kombu import Connection, Exchange, Queue
from kombu import transport as kombu_transports
from kombu.transport import filesystem as kombu_filesystem

from celery_durable.runtime import filesystem
from celery_durable.runtime.filesystem import install

EXCHANGE = Exchange("fs-test", type="direct")
QUEUE = Queue("fs-test", EXCHANGE, routing_key="fs-test")
PLAIN_KOMBU = "kombu.transport.filesystem:Transport"


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Call install(); kombu's alias table and transport cache are restored afterwards."""
    monkeypatch.setitem(kombu_transports.TRANSPORT_ALIASES, "filesystem", PLAIN_KOMBU)
    monkeypatch.setitem(kombu_transports._transport_cache, "filesystem", kombu_filesystem.Transport)
    install()


def options(folder: Path, **extra: Any) -> dict[str, Any]:
    """Transport options with every folder under ``folder`` (kombu defaults are cwd-relative)."""
    (folder / "queue").mkdir(parents=True, exist_ok=True)
    (folder / "control").mkdir(exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.01,
        **extra,
    }


def wait_for(
    condition: Callable[[], bool], timeout: float = 10.0, poll: Callable[[], Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        if poll is not None:
            poll()
        else:
            time.sleep(0.01)


def drain(conn: Connection) -> None:
    with contextlib.suppress(TimeoutError):
        conn.drain_events(timeout=0.05)


def produce(folder: str, count: int, transport: str) -> None:
    """Producer process: publish ``count`` numbered messages."""
    if transport == "filesystem":
        install()
    with Connection(transport=transport, transport_options=options(Path(folder))) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(count):
            producer.publish({"i": i}, exchange=EXCHANGE, routing_key="fs-test", declare=[QUEUE])


def queue_files(tmp_path: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in (tmp_path / "queue").iterdir() if p.name.endswith(suffix))


def test_install_makes_filesystem_url_resolve_to_the_subclass(
    installed: None, tmp_path: Path
) -> None:
    install()  # idempotent
    for conn in (
        Connection("filesystem://", transport_options=options(tmp_path)),
        Connection(transport="filesystem", transport_options=options(tmp_path)),
    ):
        with conn:
            assert type(conn.transport) is filesystem.Transport
            assert isinstance(conn.default_channel, filesystem.Channel)
            assert conn.default_channel.unreadable_grace_period == 30.0


@pytest.mark.parametrize("producer_transport", ["filesystem", PLAIN_KOMBU])
def test_round_trip_with_a_producer_process_loses_nothing(
    installed: None, tmp_path: Path, producer_transport: str
) -> None:
    """2,000 messages from another process; a plain kombu producer still exposes partial files."""
    count = 2000
    received: list[int] = []
    with Connection("filesystem://", transport_options=options(tmp_path)) as conn:
        assert type(conn.transport) is filesystem.Transport

        def on_message(body: dict[str, int], message: Any) -> None:
            received.append(body["i"])
            message.ack()

        with conn.Consumer([QUEUE], callbacks=[on_message], accept=["json"]):
            ctx = multiprocessing.get_context("spawn")
            proc = ctx.Process(target=produce, args=(str(tmp_path), count, producer_transport))
            proc.start()
            try:
                wait_for(lambda: len(received) >= count, timeout=20, poll=lambda: drain(conn))
            finally:
                proc.join(10)
    assert proc.exitcode == 0
    assert sorted(received) == list(range(count))
    assert queue_files(tmp_path, "") == []  # no leftover .msg, .tmp or .bad file


def test_partial_file_is_skipped_and_consumed_once_complete(
    installed: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    staging = tmp_path / "staging"
    with Connection("filesystem://", transport_options=options(staging)) as conn:
        conn.Producer(serializer="json").publish(
            {"late": True}, exchange=EXCHANGE, routing_key="fs-test", declare=[QUEUE]
        )
    (complete,) = (staging / "queue").iterdir()
    data = complete.read_bytes()

    with Connection("filesystem://", transport_options=options(tmp_path)) as conn:
        channel = conn.default_channel
        partial = tmp_path / "queue" / complete.name
        with caplog.at_level(logging.WARNING, logger=filesystem.__name__):
            for content in (b"", data[: len(data) // 2]):  # as kombu's own writer leaves it
                partial.write_bytes(content)
                assert channel.basic_get(QUEUE.name, no_ack=True) is None
                assert partial.exists()
        assert "Skipping unreadable message file" in caplog.text
        partial.write_bytes(data)
        message = channel.basic_get(QUEUE.name, no_ack=True)
        assert message is not None
        assert message.decode() == {"late": True}
        assert queue_files(tmp_path, "") == []


def test_bad_files_do_not_block_the_queue_and_are_moved_aside(
    installed: None, tmp_path: Path
) -> None:
    received: list[str] = []
    transport_options = options(tmp_path, unreadable_grace_period=0.5)
    with Connection("filesystem://", transport_options=transport_options) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish("first", exchange=EXCHANGE, routing_key="fs-test", declare=[QUEUE])
        # "0000_" sorts before every real message name, so these sit at the head of the queue.
        (tmp_path / "queue" / "0000_empty.fs-test.msg").write_bytes(b"")
        (tmp_path / "queue" / "0000_garbage.fs-test.msg").write_bytes(b"\x00{not json")
        producer.publish("second", exchange=EXCHANGE, routing_key="fs-test")

        def on_message(body: str, message: Any) -> None:
            received.append(body)
            message.ack()

        with conn.Consumer([QUEUE], callbacks=[on_message], accept=["json"]):
            wait_for(lambda: len(received) == 2, poll=lambda: drain(conn))
            assert received == ["first", "second"]
            bad = ["0000_empty.fs-test.msg.bad", "0000_garbage.fs-test.msg.bad"]
            wait_for(lambda: queue_files(tmp_path, ".bad") == bad, poll=lambda: drain(conn))
    assert queue_files(tmp_path, ".msg") == []
    assert (tmp_path / "queue" / bad[1]).read_bytes() == b"\x00{not json"


def test_kombu_options_store_processed_and_fanout_still_work(
    installed: None, tmp_path: Path
) -> None:
    processed = tmp_path / "processed"
    processed.mkdir()
    fanout = Exchange("fs-fanout", type="fanout")
    queues = [Queue(f"fs-fan-{n}", fanout) for n in range(2)]
    transport_options = options(tmp_path, store_processed=True, processed_folder=str(processed))
    with Connection("filesystem://", transport_options=transport_options) as conn:
        channel = conn.default_channel
        for queue in queues:
            queue(channel).declare()
        conn.Producer(serializer="json").publish("to all", exchange=fanout)
        for queue in queues:
            message = channel.basic_get(queue.name, no_ack=True)
            assert message is not None
            assert message.decode() == "to all"
    assert sorted(p.name.partition(".")[2] for p in processed.iterdir()) == [
        "fs-fan-0.msg",
        "fs-fan-1.msg",
    ]


def test_connections_with_different_control_folders_route_independently(
    installed: None, tmp_path: Path
) -> None:
    """kombu's shared broker state would skip the second binding and drop the message."""
    for name in ("one", "two"):
        with Connection("filesystem://", transport_options=options(tmp_path / name)) as conn:
            conn.Producer(serializer="json").publish(
                name, exchange=EXCHANGE, routing_key="fs-test", declare=[QUEUE]
            )
            message = conn.default_channel.basic_get(QUEUE.name, no_ack=True)
            assert message is not None
            assert message.decode() == name


def test_celery_worker_runs_every_task_and_survives_a_bad_file(
    installed: None, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    done.mkdir()
    app = Celery("fs_transport_test", broker="filesystem://", set_as_current=False)
    app.conf.update(
        broker_transport_options=options(tmp_path),
        result_backend=None,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="fs_transport_test.record")
    def record(i: int) -> None:
        (done / str(i)).touch()

    with app.connection_for_write() as conn:
        assert type(conn.transport) is filesystem.Transport
    (tmp_path / "queue" / "0000_garbage.celery.msg").write_bytes(b"{")
    with start_worker(app, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=20):
        for i in range(200):
            record.delay(i)
        wait_for(lambda: len(list(done.iterdir())) >= 200, timeout=20)
    assert sorted(int(p.name) for p in done.iterdir()) == list(range(200))
