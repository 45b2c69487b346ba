"""Resuming a stream on the Redis Streams backend: ``id:`` fields and ``Last-Event-ID``, with
Django's test clients, then over HTTP from ``runserver`` and uvicorn as ``EventSource`` would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from django.test import AsyncClient, Client
from django.test.client import RequestFactory

from broadcast_app import get_channel, sse
from broadcast_app.backends.streams import StreamsBroadcastChannel
from broadcast_app.views import BroadcastStreamView, EventStreamResponse
from localservers import RedisServer

from .django_fixtures import (
    Event,
    SSEParser,
    WebServer,
    async_chunks,
    live_topics,
    new_topic,
    parse_events,
    streams_channels,
    sync_chunks,
)
from .waiting import WAIT, holds_for, wait_until


@pytest.fixture(autouse=True)
def streams_settings(settings: Any, redis_server: RedisServer) -> Any:
    """A Streams channel on the session's Redis ("default"), an in-memory one ("memory")."""
    settings.BROADCAST_CHANNELS = streams_channels(redis_server)
    settings.BROADCAST_STREAM_AUTHORIZER = "tests.django_fixtures.allow_public"
    settings.BROADCAST_STREAM_HEARTBEAT = 0.05
    # Restoring the settings afterwards closes these channels and their subscriptions.
    return settings


class IdParser(SSEParser):
    """An SSE parser that also keeps the last event ID, as ``EventSource`` does: an
    ``id`` field without NUL sets it, and it outlives the event."""

    def __init__(self) -> None:
        super().__init__()
        self.last_event_id = ""
        self._ids: list[str] = []

    def _line(self, line: str) -> Event | None:
        name, _, value = line.partition(":")
        if name == "id":
            value = value.removeprefix(" ")
            if "\x00" not in value:
                self.last_event_id = value
            return None
        event = super()._line(line)
        if event is not None:
            self._ids.append(self.last_event_id)
        return event

    def feed_with_ids(self, chunk: bytes) -> list[tuple[Event, str]]:
        """The events a chunk completes, each with the last event ID at its dispatch."""
        events = self.feed(chunk)
        ids, self._ids = self._ids, []
        return list(zip(events, ids, strict=True))


class Reader:
    """Reads a stream's chunks (sync or async) event by event, with their IDs."""

    def __init__(self) -> None:
        self.parser = IdParser()
        self.events: list[tuple[Event, str]] = []

    def read(self, chunks: Iterator[bytes], count: int) -> list[tuple[Event, str]]:
        # Keep-alives keep the chunks coming, so the deadline is checked often enough.
        deadline = time.monotonic() + WAIT
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{count} events not seen: {self.events}"
            self.events += self.parser.feed_with_ids(next(chunks))
        return self.take(count)

    async def aread(self, chunks: AsyncIterator[bytes], count: int) -> list[tuple[Event, str]]:
        async with asyncio.timeout(WAIT):
            while len(self.events) < count:
                self.events += self.parser.feed_with_ids(await anext(chunks))
        return self.take(count)

    def take(self, count: int) -> list[tuple[Event, str]]:
        return [self.events.pop(0) for _ in range(count)]


def messages(payloads: list[bytes], ids: list[str]) -> list[tuple[Event, str]]:
    return [
        (Event(payload.decode()), cursor) for payload, cursor in zip(payloads, ids, strict=True)
    ]


def open_stream(
    client: Client, path: str, **headers: str
) -> tuple[EventStreamResponse, Iterator[bytes]]:
    response = client.get(path, headers=headers)
    assert isinstance(response, EventStreamResponse), (response.status_code, response.content)
    return response, sync_chunks(response)


# -- framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"text", b"two\nlines", b"\xff binary", b"cr\r"])
def test_message_and_binary_events_carry_the_id(payload: bytes) -> None:
    ((event, event_id),) = IdParser().feed_with_ids(sse.payload_event(payload, "17-3"))
    assert event_id == "17-3"
    data = base64.b64decode(event.data) if event.type == "binary" else event.data.encode()
    assert data == payload


def test_an_id_cannot_inject_fields_or_be_voided() -> None:
    framed = sse.payload_event(b"x", "1-0\r\ndata: injected\nid: 9\x00")
    assert parse_events(framed) == [Event("x")]
    assert b"\nid: 1-0data: injectedid: 9\n" in b"\n" + framed
    assert sse.payload_event(b"x") == b"data: x\n\n"  # No ID, no field.


# -- in-process ------------------------------------------------------------------------------


def test_events_carry_their_cursor_and_a_reconnection_gets_exactly_what_it_missed(
    client: Client, redis_server: RedisServer
) -> None:
    topic = new_topic()
    channel_topic = get_channel().topic(topic)
    response, chunks = open_stream(client, f"/broadcast/{topic}")
    reader = Reader()
    for payload in (b"0", b"1"):
        channel_topic.publish(payload)
    first = reader.read(chunks, 2)
    assert first == messages([b"0", b"1"], redis_server.stream_ids(topic))
    response.close()  # The browser went away...
    assert live_topics() == []

    for payload in (b"2", b"3", b"4"):  # ...while these were published.
        channel_topic.publish(payload)
    response, chunks = open_stream(client, f"/broadcast/{topic}", last_event_id=first[-1][1])
    missed = reader.read(chunks, 3)
    channel_topic.publish(b"5")
    live = reader.read(chunks, 1)
    # Exactly the missed ones, then live: no gap event, no duplicate.
    assert [*missed, *live] == messages(
        [b"2", b"3", b"4", b"5"], redis_server.stream_ids(topic)[2:]
    )
    response.close()
    assert live_topics() == []


@pytest.mark.parametrize(
    ("headers", "query", "replayed"),
    [
        ({}, "?last_event_id={second}", [b"c"]),
        ({"last_event_id": "{first}"}, "?last_event_id={second}", [b"b", b"c"]),  # Header wins.
        ({"last_event_id": ""}, "?last_event_id={first}", [b"b", b"c"]),  # Empty: no header.
        ({}, "?last_event_id=0-0", [b"a", b"b", b"c"]),
        ({"last_event_id": ""}, "?last_event_id=", []),  # Both empty: live only.
    ],
)
def test_query_parameter_is_the_fallback_of_the_header(
    client: Client,
    redis_server: RedisServer,
    headers: dict[str, str],
    query: str,
    replayed: list[bytes],
) -> None:
    topic = new_topic()
    channel_topic = get_channel().topic(topic)
    for payload in (b"a", b"b", b"c"):
        channel_topic.publish(payload)
    ids = redis_server.stream_ids(topic)
    cursors = {"first": ids[0], "second": ids[1]}
    headers = {name: value.format(**cursors) for name, value in headers.items()}
    response, chunks = open_stream(
        client, f"/broadcast/{topic}{query.format(**cursors)}", **headers
    )
    channel_topic.publish(b"live")
    ids = redis_server.stream_ids(topic)
    expected = [*replayed, b"live"]
    assert Reader().read(chunks, len(expected)) == messages(expected, ids[-len(expected) :])
    response.close()


def test_asgi_stream_resumes_after_the_last_event_id(redis_server: RedisServer) -> None:
    topic = new_topic()

    async def scenario() -> None:
        channel_topic = get_channel().topic(topic)
        for payload in (b"old", b"missed 1", b"missed 2"):
            await channel_topic.apublish(payload)
        ids = redis_server.stream_ids(topic)
        response = await AsyncClient().get(f"/broadcast/{topic}", headers={"last-event-id": ids[0]})
        assert isinstance(response, EventStreamResponse)
        assert response.is_async
        chunks = async_chunks(response)
        reader = Reader()
        assert await reader.aread(chunks, 2) == messages([b"missed 1", b"missed 2"], ids[1:])
        await channel_topic.apublish(b"live \xff")
        ((event, event_id),) = await reader.aread(chunks, 1)
        assert (event.type, base64.b64decode(event.data)) == ("binary", b"live \xff")
        assert event_id == redis_server.stream_ids(topic)[-1]
        await chunks.aclose()
        response.close()
        assert live_topics() == []

    asyncio.run(scenario())


def test_a_cursor_older_than_the_history_announces_a_gap_first(
    client: Client, redis_server: RedisServer
) -> None:
    topic = new_topic()
    channel_topic = get_channel().topic(topic)
    for number in range(6):
        channel_topic.publish(b"%d" % number)
    ids = redis_server.stream_ids(topic)
    redis_server._admin_client().xtrim(topic, maxlen=2, approximate=False)  # 0-3 are gone.
    response, chunks = open_stream(client, f"/broadcast/{topic}", last_event_id=ids[1])
    reader = Reader()
    gap, *rest = reader.read(chunks, 3)
    assert gap[0] == Event("", "gap")
    assert rest == messages([b"4", b"5"], ids[4:])
    channel_topic.publish(b"6")
    assert reader.read(chunks, 1)[0][0] == Event("6")  # Announced once.
    response.close()


MALFORMED = ["garbage", "1-", "-1-0", "1-0-0", "1.5-0", " 1-0", "1-0\t", "\u0661-0",
             "18446744073709551616-0", "1-" + "9" * 40, "9" * 5000]  # fmt: skip


@pytest.mark.parametrize("cursor", MALFORMED)
@pytest.mark.parametrize("where", ["header", "query"])
def test_a_malformed_last_event_id_is_400_and_never_subscribes(
    client: Client, cursor: str, where: str
) -> None:
    topic = new_topic()
    if where == "header":
        response = client.get(f"/broadcast/{topic}", headers={"last-event-id": cursor})
    else:
        response = client.get(f"/broadcast/{topic}", {"last_event_id": cursor})
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.startswith(b"Cannot resume after that last event ID: ")
    assert b"cursor" in response.content
    assert len(response.content) < 300  # An oversize ID is not echoed in full.
    assert live_topics() == []


def test_authorization_and_the_topic_name_are_checked_before_the_last_event_id(
    client: Client, settings: Any
) -> None:
    asked: list[str] = []

    def allow_public(request: Any, topic: str) -> bool:
        asked.append(topic)
        return topic.startswith("public:")

    settings.BROADCAST_STREAM_AUTHORIZER = allow_public
    bad = {"last-event-id": "garbage"}
    assert client.get("/broadcast/public:a%0Ab", headers=bad).status_code == 400
    assert asked == []
    assert client.get("/broadcast/private:x", headers=bad).status_code == 403
    assert asked == ["private:x"]
    assert client.get("/broadcast/public:x", headers=bad).status_code == 400
    settings.BROADCAST_STREAM_AUTHORIZER = None
    assert client.get("/broadcast/public:x", headers=bad).status_code == 403
    assert live_topics() == []


def test_channels_without_history_ignore_the_last_event_id() -> None:
    view = BroadcastStreamView.as_view(channel_alias="memory")
    request = RequestFactory().get("/?last_event_id=garbage", headers={"last-event-id": "x"})
    response = view(request, topic="public:plain")
    assert isinstance(response, EventStreamResponse)
    chunks = sync_chunks(response)
    get_channel("memory").topic("public:plain").publish(b"m")
    assert Reader().read(chunks, 1) == [(Event("m"), "")]  # No ID: there is nothing to resume from.
    response.close()
    assert live_topics("memory") == []


def test_a_replay_that_cannot_read_redis_ends_the_stream(
    client: Client, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    topic = new_topic()
    get_channel().topic(topic).publish(b"first")
    (cursor,) = redis_server.stream_ids(topic)
    response, chunks = open_stream(client, f"/broadcast/{topic}", last_event_id=cursor)
    # Subscribed; before the replay reads, the key stops being a stream.
    admin = redis_server._admin_client()
    admin.delete(topic)
    admin.set(topic, "not a stream")
    try:
        with caplog.at_level(logging.WARNING, "broadcast_app"):
            body = b"".join(chunks)
    finally:
        admin.delete(topic)
    parser = IdParser()
    assert parser.feed_with_ids(body) == []  # Nothing but the retry frame, then the end.
    assert parser.retry == 3000
    assert f"Stopped streaming topic {topic!r}" in caplog.text
    response.close()
    assert live_topics() == []


# -- behind real servers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_redis() -> Iterator[RedisServer]:
    """The Redis of this module's web servers, theirs alone: its readers are theirs."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module", params=["runserver", "uvicorn"])
def streams_server(request: pytest.FixtureRequest, web_redis: RedisServer) -> Iterator[WebServer]:
    """testproject on a Streams channel on ``web_redis``, under WSGI and ASGI."""
    with WebServer(request.param, web_redis, BROADCAST_BACKEND="streams") as server:
        yield server


@pytest.fixture
def publisher(web_redis: RedisServer) -> Iterator[StreamsBroadcastChannel]:
    """A channel of this process on ``web_redis``; it only publishes, so it has no reader."""
    channel = StreamsBroadcastChannel.from_url(web_redis.url)
    yield channel
    channel.close()


def blocked_readers(server: RedisServer) -> int:
    """Clients blocked in XREAD: the reader of a process with a live Streams subscription."""
    return sum(1 for entry in server.clients() if entry["cmd"] == "xread" and "b" in entry["flags"])


@contextlib.contextmanager
def http_stream(client: httpx.Client, path: str, **headers: str) -> Iterator[Iterator[bytes]]:
    """Open a stream; yield its chunks once the first one (sent once the subscription is
    live) has arrived."""
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        chunks = response.iter_raw()
        yield itertools.chain([next(chunks)], chunks)


def answer(client: httpx.Client, path: str, **options: Any) -> tuple[int, str]:
    """Status and body of a response that should not be a stream (a stream's is not read)."""
    with client.stream("GET", path, **options) as response:
        return response.status_code, "" if response.status_code == 200 else response.read().decode()


def test_over_http_a_reconnecting_client_gets_exactly_what_it_missed(
    streams_server: WebServer, web_redis: RedisServer, publisher: StreamsBroadcastChannel
) -> None:
    topic = new_topic()
    channel_topic = publisher.topic(topic)
    reader = Reader()
    with httpx.Client(base_url=streams_server.url, timeout=WAIT) as client:
        with http_stream(client, f"/broadcast/{topic}") as chunks:
            for payload in (b"0", b"1"):
                channel_topic.publish(payload)
            seen = reader.read(chunks, 2)
        assert seen == messages([b"0", b"1"], web_redis.stream_ids(topic))

        for payload in (b"2", b"3", b"4"):
            channel_topic.publish(payload)
        # What EventSource sends when it reconnects: the last ID it received.
        with http_stream(client, f"/broadcast/{topic}", **{"Last-Event-ID": seen[-1][1]}) as chunks:
            missed = reader.read(chunks, 3)
            channel_topic.publish(b"5")
            live = reader.read(chunks, 1)
        ids = web_redis.stream_ids(topic)
        assert [*missed, *live] == messages([b"2", b"3", b"4", b"5"], ids[2:])

        # A page that starts anew passes the ID it kept in the URL.
        with http_stream(client, f"/broadcast/{topic}?last_event_id={seen[0][1]}") as chunks:
            assert Reader().read(chunks, 5) == messages([b"1", b"2", b"3", b"4", b"5"], ids[1:])
    assert "Traceback" not in streams_server.log()


def test_over_http_a_malformed_last_event_id_is_400_and_never_subscribes(
    streams_server: WebServer, web_redis: RedisServer
) -> None:
    topic = new_topic()
    with httpx.Client(base_url=streams_server.url, timeout=WAIT) as client:
        # The server's reader blocks in XREAD while it has a subscription, and only then.
        with http_stream(client, f"/broadcast/{topic}"):
            assert wait_until(lambda: blocked_readers(web_redis) == 1, WAIT)
        assert wait_until(lambda: blocked_readers(web_redis) == 0, WAIT)

        by_header = answer(client, f"/broadcast/{topic}", headers={"Last-Event-ID": "1-x"})
        by_query = answer(client, f"/broadcast/{topic}", params={"last_event_id": "1-0-0"})
    assert by_header[0] == by_query[0] == 400
    assert by_header[1].startswith("Cannot resume after that last event ID")
    assert holds_for(lambda: blocked_readers(web_redis) == 0, 0.5)
