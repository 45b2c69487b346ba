"""The stream view behind real servers — ``runserver`` (threaded WSGI) and uvicorn (ASGI) —
read over real HTTP connections, with messages published by this process through Redis."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Self

import httpx
import pytest
import redis

from localservers import RedisServer

from .django_fixtures import TEST_HEARTBEAT, Event, EventStream, SSEParser, WebServer, new_topic
from .waiting import WAIT, wait_until

#: Concurrent streams of the many-clients test.
CLIENTS = 200


@pytest.fixture
def publisher(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def test_events_cross_processes_and_disconnect_releases_the_subscription(
    web_server: WebServer, redis_server: RedisServer, publisher: redis.Redis
) -> None:
    topic = new_topic()
    with (
        httpx.Client(base_url=web_server.url, timeout=WAIT) as client,
        client.stream(
            "GET", f"/broadcast/{topic}", headers={"Accept-Encoding": "gzip"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        # GZipMiddleware is enabled in testproject; compressing would hold events back.
        assert response.headers["content-encoding"] == "identity"
        stream = EventStream(response).wait_open()
        # The headers arrive once the subscription is live.
        assert redis_server.numsub(topic) == 1

        for payload in (b"plain", "multi\nline é".encode(), b"\x00\xff binary"):
            publisher.publish(topic, payload)
        stream.read_until(lambda events: len(events) >= 3)
        assert stream.events[:2] == [Event("plain"), Event("multi\nline é")]
        assert stream.events[2].type == "binary"
        assert base64.b64decode(stream.events[2].data) == b"\x00\xff binary"
        stream.read_until(lambda _: "keep-alive" in stream.parser.comments)
    assert "must consume" not in web_server.log()
    # WSGI learns of the disconnect when a keep-alive fails to be written.
    assert wait_until(lambda: redis_server.numsub(topic) == 0, WAIT + 20 * TEST_HEARTBEAT)


def test_refused_and_invalid_requests_never_subscribe(
    web_server: WebServer, redis_server: RedisServer
) -> None:
    with httpx.Client(base_url=web_server.url, timeout=WAIT) as client:
        refused = client.get("/broadcast/private:secrets")
        invalid = client.get("/broadcast/public:a%0Ab")
        empty = client.get("/broadcast/")
    assert refused.status_code == 403
    assert (invalid.status_code, empty.status_code) == (400, 400)
    assert redis_server.numsub("private:secrets") == 0
    assert redis_server.numsub("public:a\nb") == 0


class AsyncStream:
    """An open response of an ``httpx.AsyncClient``, read as SSE on demand."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_raw()
        self.unread: list[bytes] = []
        self.parser = SSEParser()
        self.events: list[Event] = []

    @classmethod
    async def open(cls, client: httpx.AsyncClient, stack: AsyncExitStack, path: str) -> Self:
        """Open a stream on ``stack`` and wait for its first chunk."""
        response = await stack.enter_async_context(client.stream("GET", path))
        assert response.status_code == 200
        stream = cls(response)
        stream.unread.append(await anext(stream.chunks))
        return stream

    async def next_event(self) -> Event:
        while not self.events:
            chunk = self.unread.pop() if self.unread else await anext(self.chunks)
            self.events += self.parser.feed(chunk)
        return self.events.pop(0)


def test_hundreds_of_asgi_clients_share_one_subscription_and_no_threads(
    redis_server: RedisServer, publisher: redis.Redis
) -> None:
    topic = new_topic()

    async def scenario(server: WebServer) -> dict[str, int]:
        limits = httpx.Limits(max_connections=CLIENTS * 2, max_keepalive_connections=0)
        threads = {"idle server": server.threads()}
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT, limits=limits) as client:
            # Baseline: Django's ASGI handler keeps one thread per open request, whatever
            # the view. Measure it with a trivial async stream.
            async with AsyncExitStack() as stack, asyncio.timeout(WAIT * 3):
                await asyncio.gather(
                    *(
                        AsyncStream.open(client, stack, "/testing/idle-stream/")
                        for _ in range(CLIENTS)
                    )
                )
                threads["trivial streams"] = server.threads()
            async with AsyncExitStack() as stack, asyncio.timeout(WAIT * 3):
                streams = await asyncio.gather(
                    *(
                        AsyncStream.open(client, stack, f"/broadcast/{topic}")
                        for _ in range(CLIENTS)
                    )
                )
                threads["broadcast streams"] = server.threads()
                assert redis_server.numsub(topic) == 1  # One Redis subscription for them all.
                publisher.publish(topic, b"to everyone")
                events = await asyncio.gather(*(stream.next_event() for stream in streams))
                assert events == [Event("to everyone")] * CLIENTS
        return threads

    with WebServer("uvicorn", redis_server) as server:
        threads = asyncio.run(scenario(server))
        assert wait_until(lambda: redis_server.numsub(topic) == 0, WAIT), "streams not released"
        # Django warns if it has to drive a sync iterator from ASGI (or the reverse).
        assert "must consume" not in server.log()
    # The stream view adds no thread per client: at most the engine's own (a Redis reader).
    assert threads["broadcast streams"] <= threads["trivial streams"] + 3, threads
    # The baseline did hold a thread per request, so the comparison above means something.
    assert threads["trivial streams"] >= threads["idle server"] + CLIENTS - 5, threads
