"""Helpers for the Django integration tests: channel settings, web servers as subprocesses,
an SSE parser, and the authorizers the test servers are configured with (by dotted path).

A pytest plugin (see ``conftest.pytest_plugins``): its fixtures serve every test module."""

from __future__ import annotations

import codecs
import io
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from django.http import StreamingHttpResponse

from broadcast_app import get_channel
from broadcast_app.backends.base import HubOwner
from localservers import LoggedProcess, RedisServer, free_port

from .waiting import WAIT

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a web server may take to answer its first request.
SERVER_START_TIMEOUT = 20.0
#: The keep-alive period of the test servers: short, so dead clients are found quickly.
TEST_HEARTBEAT = 0.2


# -- Channel settings -----------------------------------------------------------------------

#: The ``BACKEND`` of each kind of channel in ``BROADCAST_CHANNELS``.
MEMORY = "broadcast_app.backends.memory.InMemoryBroadcastChannel"
REDIS = "broadcast_app.backends.redis.RedisBroadcastChannel"
SHARDED = "broadcast_app.backends.sharded.ShardedRedisBroadcastChannel"
STREAMS = "broadcast_app.backends.streams.StreamsBroadcastChannel"


def streams_channels(redis: RedisServer) -> dict[str, dict[str, str]]:
    """``BROADCAST_CHANNELS`` with a Streams channel on ``redis`` ("default"), a Pub/Sub
    channel on it ("pubsub") and an in-memory channel ("memory")."""
    return {
        "default": {"BACKEND": STREAMS, "LOCATION": redis.url},
        "pubsub": {"BACKEND": REDIS, "LOCATION": redis.url},
        "memory": {"BACKEND": MEMORY},
    }


def live_topics(alias: str = "default") -> list[str]:
    """The topics the channel ``alias`` has live subscriptions to in this process."""
    channel = get_channel(alias)
    assert isinstance(channel, HubOwner), channel
    return channel.hub.topics()


def new_topic(label: str = "public") -> str:
    """A topic name no other test uses; the test servers stream ``public:`` topics."""
    return f"{label}:{uuid.uuid4().hex[:12]}"


# -- Authorizers (dotted paths: "tests.django_fixtures.<name>") -------------------------------


def allow_all(request: Any, topic: str) -> bool:
    return True


def allow_public(request: Any, topic: str) -> bool:
    return topic.startswith("public:")


async def allow_public_async(request: Any, topic: str) -> bool:
    return topic.startswith("public:")


# -- Server-Sent Events, parsed as the WHATWG HTML standard says -----------------------------


def sync_chunks(response: StreamingHttpResponse) -> Iterator[bytes]:
    """The body of a stream served under WSGI, chunk by chunk."""
    content = response.streaming_content
    assert isinstance(content, Iterator), content
    return content


def async_chunks(response: StreamingHttpResponse) -> AsyncGenerator[bytes, None]:
    """The body of a stream served under ASGI, chunk by chunk; ``aclose()`` ends it."""
    content = response.streaming_content
    assert isinstance(content, AsyncGenerator), content
    return content


@dataclass
class Event:
    data: str
    type: str = "message"


@dataclass
class SSEParser:
    """Incremental event-stream parser; ``feed()`` returns the events completed by a chunk."""

    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    #: Every ``retry`` and ``id`` field, in order (``retry`` above is the last).
    retries: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=codecs.getincrementaldecoder("utf-8")
    )

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += self._decoder.decode(chunk)
        events: list[Event] = []
        while True:
            match = re.search(r"\r\n|\r|\n", self._buffer)
            # A CR at the very end may be the first half of a CRLF: wait for more.
            if match is None or (match.group() == "\r" and match.end() == len(self._buffer)):
                return events
            line, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if line == "":
            data, kind = self._data, self._type or "message"
            self._data, self._type = [], ""
            if not data:
                return None
            return Event("\n".join(data), kind)
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
            self.retries.append(self.retry)
        elif name == "id":
            self.ids.append(value)
        return None


def parse_events(body: bytes) -> list[Event]:
    return SSEParser().feed(body)


class EventStream:
    """An open SSE response of httpx, parsed as it arrives."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.chunks = response.iter_raw()  # As sent: no content decoding in between.
        self.parser = SSEParser()
        self.events: list[Event] = []

    def wait_open(self) -> Self:
        """Read the first chunk, the ``retry:`` line: the view sends it once subscribed."""
        return self.read_until(lambda _: self.parser.retry is not None)

    def read_until(self, done: Callable[[list[Event]], bool], timeout: float = WAIT) -> Self:
        """Read until ``done(events)``; fail if it takes more than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.events):
            assert time.monotonic() < deadline, f"timed out; events so far: {self.events}"
            self.events += self.parser.feed(next(self.chunks))
        return self


# -- Commands ---------------------------------------------------------------------------------


class StartNotice(io.StringIO):
    """A stderr for ``tail_topic`` that tells when the command says it is tailing
    (subscribed, before anything is read): ``started`` is set, after ``on_start()`` ran."""

    def __init__(self, on_start: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.started = threading.Event()
        self._on_start = on_start

    def write(self, text: str) -> int:
        if text.startswith("Tailing") and not self.started.is_set():
            if self._on_start is not None:
                self._on_start()
            self.started.set()
        return super().write(text)


# -- Web servers ----------------------------------------------------------------------------


class WebServer(LoggedProcess):
    """``manage.py runserver`` (threaded WSGI) or uvicorn (ASGI) serving testproject.

    Environment: REDIS_URL of ``redis`` (Redis channel; else in-memory), the
    ``tests.django_fixtures.allow_public`` authorizer and a TEST_HEARTBEAT keep-alive.
    """

    start_timeout = SERVER_START_TIMEOUT
    stop_signal = signal.SIGINT

    def __init__(self, kind: str, redis: RedisServer | None, **environ: str) -> None:
        super().__init__(
            kind,
            kind,
            ROOT,
            {
                "DJANGO_SETTINGS_MODULE": "testproject.settings",
                "BROADCAST_STREAM_AUTHORIZER": "tests.django_fixtures.allow_public",
                "BROADCAST_STREAM_HEARTBEAT": str(TEST_HEARTBEAT),
                "PYTHONUNBUFFERED": "1",
                **environ,
            },
        )
        self.kind = kind
        self.port = free_port()
        if redis is not None:
            self.environ["REDIS_URL"] = redis.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        if self.kind == "runserver":
            return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}",
                    "--noreload", "--skip-checks"]  # fmt: skip
        return [sys.executable, "-m", "uvicorn", "testproject.asgi:application",
                "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "off",
                "--no-access-log", "--timeout-graceful-shutdown", "1"]  # fmt: skip

    def base_environ(self) -> dict[str, str]:
        # Only ``redis`` decides the channel, never a REDIS_URL of the test run.
        return {key: value for key, value in os.environ.items() if key != "REDIS_URL"}

    def ready(self) -> bool:
        try:
            httpx.get(self.url + "/broadcast/", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    def threads(self) -> int:
        """The number of threads of the server process now."""
        return len(os.listdir(f"/proc/{self.pid}/task"))


@pytest.fixture(scope="module", params=["runserver", "uvicorn"])
def web_server(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[WebServer]:
    """testproject under threaded WSGI and under ASGI, on the session's Redis."""
    with WebServer(request.param, redis_server) as server:
        yield server
