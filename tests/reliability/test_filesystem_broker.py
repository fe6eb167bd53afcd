"""The ``filesystem://`` transport under several processes at once (kombu issue #1551).

kombu's own writer creates a message file under its final name and writes the body after; its
consumer takes whatever file it finds. A consumer that comes between the two reads an empty file,
raises ``JSONDecodeError`` and has already removed the file: the message is lost. That window is
reproduced here deterministically (a stock writer paused inside it), then several producer and
consumer processes exchange many messages through celery_durable's transport and lose none.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport import filesystem as kombu_filesystem

from celery_durable.runtime import filesystem

EXCHANGE = Exchange("fs-procs", type="direct")
QUEUE = Queue("fs-procs", EXCHANGE, routing_key="fs-procs")
STOCK = "kombu.transport.filesystem:Transport"
OURS = "celery_durable.runtime.filesystem:Transport"
SPAWN = multiprocessing.get_context("spawn")


def options(folder: Path) -> dict[str, Any]:
    (folder / "queue").mkdir(parents=True, exist_ok=True)
    (folder / "control").mkdir(exist_ok=True)
    return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"), "polling_interval": 0.005}


# -- the empty-file window, deterministically ------------------------------------------------------

def paused_stock_writer(folder: str, created: str, resume: str) -> None:
    """Publish one message with kombu's own writer, pausing after it has created the file under
    its final name and before it writes the body, until the file ``resume`` exists."""
    real_lock = kombu_filesystem.lock

    def lock_then_pause(f: Any, flags: int) -> None:
        real_lock(f, flags)
        if not str(f.name).endswith(".msg"):  # the exchange table in the control folder
            return
        Path(created).touch()
        while not os.path.exists(resume):
            time.sleep(0.005)

    kombu_filesystem.lock = lock_then_pause
    with Connection(transport=STOCK, transport_options=options(Path(folder))) as conn:
        conn.Producer(serializer="json").publish({"n": 1}, exchange=EXCHANGE,
                                                 routing_key="fs-procs", declare=[QUEUE])


@pytest.mark.parametrize(("consumer", "lost"), [(STOCK, True), (OURS, False)],
                         ids=["stock kombu", "celery_durable"])
def test_a_consumer_in_the_writers_window(tmp_path: Path, consumer: str, lost: bool) -> None:
    """The stock consumer loses the message it read too early; ours waits for its body."""
    transport_options = options(tmp_path)
    created, resume = tmp_path / "created", tmp_path / "resume"
    with Connection(transport=consumer, transport_options=transport_options) as conn:
        QUEUE(conn.default_channel).declare()
        writer = SPAWN.Process(target=paused_stock_writer,
                               args=(str(tmp_path), str(created), str(resume)))
        writer.start()
        try:
            deadline = time.monotonic() + 30
            while not created.exists():
                assert time.monotonic() < deadline and writer.is_alive(), "writer never paused"
                time.sleep(0.005)
            (name,) = os.listdir(tmp_path / "queue")
            assert (tmp_path / "queue" / name).stat().st_size == 0  # in the window
            channel = conn.default_channel
            if lost:
                with pytest.raises(json.JSONDecodeError):
                    channel.basic_get(QUEUE.name, no_ack=True)
            else:
                assert channel.basic_get(QUEUE.name, no_ack=True) is None  # skipped for now
        finally:
            resume.touch()
            writer.join(30)
        assert writer.exitcode == 0
        message = channel.basic_get(QUEUE.name, no_ack=True)
        if lost:
            assert message is None and os.listdir(tmp_path / "queue") == []  # gone for good
        else:
            assert message is not None and message.decode() == {"n": 1}


# -- many messages, several producers and consumers at once ---------------------------------------

def produce(folder: str, first: int, count: int) -> None:
    """Producer process: publish messages ``first`` .. ``first + count - 1``."""
    filesystem.install()
    with Connection("filesystem://", transport_options=options(Path(folder))) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(first, first + count):
            producer.publish({"i": i}, exchange=EXCHANGE, routing_key="fs-procs",
                             declare=[QUEUE])


def consume(folder: str, record: str) -> None:
    """Consumer process: take messages until killed, appending each number to ``record``."""
    filesystem.install()
    with Connection("filesystem://", transport_options=options(Path(folder))) as conn, \
            open(record, "a", buffering=1) as out:
        channel = conn.default_channel
        QUEUE(channel).declare()
        while True:
            try:
                message = channel.basic_get(QUEUE.name, no_ack=True)
            except Empty:
                message = None
            if message is None:
                time.sleep(0.005)
                continue
            out.write(f"{message.decode()['i']}\n")


def received(records: list[Path]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for path in records:
        if path.exists():
            counts.update(int(line) for line in path.read_text().split())
    return counts


def exchange_messages(tmp_path: Path, total: int, producers: int = 4,
                      consumers: int = 3) -> None:
    folder = str(tmp_path)
    options(tmp_path)
    records = [tmp_path / f"consumer{n}.txt" for n in range(consumers)]
    per = total // producers
    started = time.monotonic()
    taking = [SPAWN.Process(target=consume, args=(folder, str(path))) for path in records]
    giving = [SPAWN.Process(target=produce, args=(folder, n * per, per))
              for n in range(producers)]
    for process in taking + giving:
        process.start()
    try:
        last, quiet_since = -1, time.monotonic()
        while True:
            got = received(records)
            if sum(got.values()) >= total:
                break
            if sum(got.values()) != last:
                last, quiet_since = sum(got.values()), time.monotonic()
            assert time.monotonic() - quiet_since < 20, f"stuck at {last} of {total} messages"
            time.sleep(0.1)
        for process in giving:
            process.join(30)
            assert process.exitcode == 0
        time.sleep(0.2)  # anything delivered twice would show now
    finally:
        for process in taking + giving:
            if process.is_alive():
                process.kill()
            process.join(10)
    got = received(records)
    print(f"{total} messages, {producers} producers, {consumers} consumers: "
          f"{time.monotonic() - started:.1f}s; per consumer "
          f"{[len(p.read_text().split()) for p in records]}")
    assert sorted(got) == list(range(total)), f"lost {total - len(got)} messages"
    assert max(got.values()) == 1, f"delivered twice: {[i for i, n in got.items() if n > 1]}"
    leftovers = [name for name in os.listdir(tmp_path / "queue") if name != "control"]
    assert leftovers == [], leftovers


def test_several_processes_exchange_2000_messages_and_lose_none(tmp_path: Path) -> None:
    exchange_messages(tmp_path, 2_000)


@pytest.mark.chaos
def test_several_processes_exchange_10000_messages_and_lose_none(tmp_path: Path) -> None:
    exchange_messages(tmp_path, 10_000)
