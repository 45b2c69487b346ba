"""Helpers for the stream fast-path tests: uvicorn serving ``tests.stream_asgi``, tokens
minted with the server's key, and raw-socket clients that can stop reading."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings

from broadcast_app.tokens import stream_url
from localservers import RedisServer

from .django_fixtures import Event, SSEParser, WebServer

#: The SECRET_KEY of the fast-path test servers (tests.stream_settings reads it).
SERVER_SECRET_KEY = "stream-tests-key-" + "k" * 40
#: Seconds a socket read may wait before the test fails.
READ_TIMEOUT = 10.0


class FastPathServer(WebServer):
    """uvicorn serving ``tests.stream_asgi`` (the test project behind ``with_streams``).

    ``backend`` is the Redis backend ("pubsub" or "streams"); ``settings`` go to
    ``tests.stream_settings`` as JSON. ``graceful_timeout=None`` runs
    uvicorn without ``--timeout-graceful-shutdown``, as the drain must work without it.
    """

    stop_signal = WebServer.stop_signal

    def __init__(
        self,
        redis: RedisServer | None,
        *,
        backend: str = "pubsub",
        graceful_timeout: int | None = 1,
        **settings: Any,
    ) -> None:
        super().__init__(
            "uvicorn",
            redis,
            BROADCAST_BACKEND=backend,
            DJANGO_SETTINGS_MODULE="tests.stream_settings",
            STREAM_TEST_SECRET_KEY=SERVER_SECRET_KEY,
            **{name: json.dumps(value) for name, value in settings.items()},
        )
        self.graceful_timeout = graceful_timeout

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "uvicorn", "tests.stream_asgi:application",
                   "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "off",
                   "--no-access-log"]  # fmt: skip
        if self.graceful_timeout is not None:
            command += ["--timeout-graceful-shutdown", str(self.graceful_timeout)]
        return command


def new_topic(label: str = "fast") -> str:
    return f"{label}:{uuid.uuid4().hex[:10]}"


def signed_url(topic: str, **kwargs: Any) -> str:
    """``stream_url(topic)`` as the test servers would mint it (their SECRET_KEY)."""
    with override_settings(SECRET_KEY=SERVER_SECRET_KEY):
        return stream_url(topic, **kwargs)


class RawStream:
    """A GET over a plain socket: it can stop reading (a stalled client) and close at will.

    ``receive_buffer`` shrinks SO_RCVBUF before connecting, so a client that stops reading
    stalls the server's sends soon.
    """

    def __init__(self, port: int, path: str, *, receive_buffer: int | None = None, **headers: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(READ_TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.buffer = b""
        self.parser = SSEParser()
        self.events: list[Event] = []
        self.ended = False
        self.status, self.head = self._read_head()
        self._dechunk()

    def _read_head(self) -> tuple[int, str]:
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        text = head.decode("latin-1")
        return int(text.split()[1]), text

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data
        self._dechunk()

    def _dechunk(self) -> None:
        """Feed the parser every complete chunk received (chunked transfer coding)."""
        while b"\r\n" in self.buffer and not self.ended:
            size_text, after = self.buffer.split(b"\r\n", 1)
            size = int(size_text, 16)
            if len(after) < size + 2:
                return
            self.buffer = after[size + 2 :]
            self.ended = size == 0
            self.events += self.parser.feed(after[:size])

    @property
    def retries(self) -> list[int]:
        return self.parser.retries

    @property
    def ids(self) -> list[str]:
        return self.parser.ids

    def read_until(self, done: Any, timeout: float = READ_TIMEOUT) -> None:
        """Read until ``done()`` is true (of the events parsed so far, say)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout} s; events: {self.events[-3:]}")
            self._recv()

    def read_to_end(self, timeout: float = READ_TIMEOUT) -> None:
        """Read until the response ends or the server closes the connection."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(EOFError, ConnectionResetError):
            while not self.ended:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the response did not end within {timeout} s")
                self._recv()

    def close(self) -> None:
        self.sock.close()


@contextmanager
def raw_streams(streams: list[RawStream]) -> Iterator[list[RawStream]]:
    try:
        yield streams
    finally:
        for stream in streams:
            stream.close()
