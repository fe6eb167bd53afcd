"""Database round trips, counted on the wire: a TCP proxy in front of PostgreSQL that counts
the server's ReadyForQuery messages.

PostgreSQL answers every simple query, and every Sync of the extended protocol, with exactly one
ReadyForQuery ('Z'); a client waits for it before it goes on (pipeline mode sends several
statements before one Sync). So the number of 'Z' messages is the number of round trips the
client made, BEGIN and COMMIT included, whatever the driver or SQLAlchemy did to get there.

Connect through `RoundTripProxy.url` with SSL and GSS encryption off (``sslmode=disable``,
``gssencmode=disable``: the counter reads the protocol in the clear).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.engine import make_url


@dataclass
class RoundTrips:
    """What `RoundTripProxy.counting` saw: round trips (ReadyForQuery messages)."""

    count: int = 0


class _ServerStream:
    """Parses the server's side of one connection: type byte, int32 length, body."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False

    def feed(self, data: bytes) -> int:
        """Add ``data``; return how many ReadyForQuery messages it completed."""
        self._buffer += data
        ready = 0
        while True:
            if not self._started and self._buffer[:1] == b"N":  # refused SSL/GSS request
                self._buffer = self._buffer[1:]
                continue
            if len(self._buffer) < 5:
                return ready
            length = int.from_bytes(self._buffer[1:5], "big")
            if len(self._buffer) < 1 + length:
                return ready
            kind = self._buffer[:1]
            self._buffer = self._buffer[1 + length:]
            self._started = True
            if kind == b"Z":
                ready += 1


class RoundTripProxy:
    """Forwards 127.0.0.1:<port> to the database of ``url`` and counts round trips."""

    def __init__(self, url: str) -> None:
        target = make_url(url)
        self._target = (target.host or "127.0.0.1", target.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self.url = target.set(host="127.0.0.1", port=port).update_query_dict(
            {"sslmode": "disable", "gssencmode": "disable"}).render_as_string(
                hide_password=False)
        self._lock = threading.Lock()
        self._active: list[RoundTrips] = []
        self.total = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    @contextlib.contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        """Count the round trips of every connection through the proxy while in the block."""
        counted = RoundTrips()
        with self._lock:
            self._active.append(counted)
        try:
            yield counted
        finally:
            with self._lock:
                self._active.remove(counted)

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._relay, args=(client, server), daemon=True)
            thread.start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        stream = _ServerStream()
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [])
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is server:
                        ready = stream.feed(data)
                        if ready:
                            with self._lock:
                                self.total += ready
                                for counted in self._active:
                                    counted.count += ready
                        client.sendall(data)
                    else:
                        server.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()
