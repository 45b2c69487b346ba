"""The stream view in-process, on the in-memory channel: Django's test clients for WSGI
(sync iterator) and ASGI (async iterator), RequestFactory for subclasses."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.test import AsyncClient, Client, RequestFactory
from django.urls import reverse

from broadcast_app import get_channel
from broadcast_app.views import BroadcastStreamView, EventStreamResponse
from localservers import RedisServer

from .django_fixtures import MEMORY, REDIS, Event, SSEParser, async_chunks, live_topics, sync_chunks


@pytest.fixture(autouse=True)
def memory_settings(settings: Any) -> Any:
    """In-memory channels, a permissive authorizer for ``public:`` topics, fast keep-alives."""
    settings.BROADCAST_CHANNELS = {"default": {"BACKEND": MEMORY}, "other": {"BACKEND": MEMORY}}
    settings.BROADCAST_STREAM_AUTHORIZER = "tests.django_fixtures.allow_public"
    settings.BROADCAST_STREAM_HEARTBEAT = 0.05
    # Restoring the settings afterwards closes these channels and their subscriptions.
    return settings


class Reader:
    """Reads a sync stream event by event; every chunk is fed to an SSE parser."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.parser = SSEParser()
        self.events: list[Event] = []

    def until(self, predicate: Callable[[Reader], bool], chunks: int = 200) -> Reader:
        for _ in range(chunks):
            if predicate(self):
                return self
            self.events += self.parser.feed(next(self.chunks))
        raise AssertionError(f"Not seen in {chunks} chunks: {self.events}")

    def events_of(self, count: int) -> list[Event]:
        return self.until(lambda reader: len(reader.events) >= count).events[:count]


def stream(
    client: Client, path: str, headers: dict[str, str] | None = None
) -> tuple[EventStreamResponse, Reader]:
    response = client.get(path, headers=headers)
    assert isinstance(response, EventStreamResponse), response
    return response, Reader(sync_chunks(response))


def test_without_authorizer_every_request_is_refused_naming_the_setting(
    client: Client, settings: Any
) -> None:
    settings.BROADCAST_STREAM_AUTHORIZER = None
    response = client.get("/broadcast/public:news")
    assert response.status_code == 403
    assert b"BROADCAST_STREAM_AUTHORIZER" in response.content
    assert live_topics() == []


@pytest.mark.parametrize(
    "path",
    [
        "/broadcast/",
        "/broadcast/public:a%0Ab",
        "/broadcast/public:%00",
        "/broadcast/public:" + "x" * 1024,
    ],
)
def test_names_the_channel_rejects_are_400_before_the_authorizer_is_asked(
    client: Client, settings: Any, path: str
) -> None:
    asked: list[str] = []

    def allow_all_noting(request: HttpRequest, topic: str) -> bool:
        asked.append(topic)
        return True

    settings.BROADCAST_STREAM_AUTHORIZER = allow_all_noting
    response = client.get(path)
    assert response.status_code == 400
    assert response.content.startswith(b"A topic name must")
    assert asked == []
    assert live_topics() == []


async def _truthy_but_not_true(request: HttpRequest, topic: str) -> object:
    return "yes"


@pytest.mark.parametrize(
    "authorizer",
    [
        "tests.django_fixtures.allow_public",
        "tests.django_fixtures.allow_public_async",
        lambda request, topic: False,
        _truthy_but_not_true,
    ],
)
def test_a_refusal_is_403_and_never_subscribes(
    client: Client, settings: Any, authorizer: object
) -> None:
    settings.BROADCAST_STREAM_AUTHORIZER = authorizer
    response = client.get("/broadcast/private:payroll")
    assert response.status_code == 403
    assert live_topics() == []


def test_async_authorizer_can_allow(client: Client, settings: Any) -> None:
    settings.BROADCAST_STREAM_AUTHORIZER = "tests.django_fixtures.allow_public_async"
    response, _ = stream(client, "/broadcast/public:a")
    response.close()


def test_other_methods_are_not_allowed(client: Client) -> None:
    assert client.post("/broadcast/public:a").status_code == 405
    assert client.head("/broadcast/public:a").status_code == 405
    assert live_topics() == []


@pytest.mark.parametrize(
    "name", ["public:jobs.42-a_b", "public:with space/and/slashes", "public:é"]
)
def test_reversed_urls_carry_any_usable_topic_name(client: Client, name: str) -> None:
    path = reverse("broadcast_app:stream", kwargs={"topic": name})
    response, _ = stream(client, path)
    assert response.subscription.topic == name
    assert live_topics() == [name]
    response.close()
    assert live_topics() == []


def test_wsgi_stream_headers_events_and_keep_alives(client: Client) -> None:
    response, reader = stream(client, "/broadcast/public:w", {"Accept-Encoding": "gzip"})
    assert not response.is_async
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    # GZipMiddleware is on in testproject and the client accepts gzip: it must stay out.
    assert response["Content-Encoding"] == "identity"
    assert reader.until(lambda r: r.parser.retry is not None).parser.retry == 3000
    assert live_topics() == ["public:w"]  # Subscribed before the first byte.

    topic = get_channel().topic("public:w")
    for payload in (b"one", b"two\nlines", b"\xff\x00raw"):
        topic.publish(payload)
    events = reader.events_of(3)
    assert events[:2] == [Event("one"), Event("two\nlines")]
    assert events[2].type == "binary"
    assert base64.b64decode(events[2].data) == b"\xff\x00raw"
    reader.until(lambda r: "keep-alive" in r.parser.comments)

    response.close()
    assert live_topics() == []


def test_asgi_stream_is_an_async_iterator_and_closes_its_subscription() -> None:
    async def scenario() -> None:
        response = await AsyncClient().get(
            "/broadcast/public:a", headers={"accept-encoding": "gzip"}
        )
        assert isinstance(response, EventStreamResponse)
        assert response.is_async
        assert response["Content-Encoding"] == "identity"
        chunks = async_chunks(response)
        parser = SSEParser()
        parser.feed(await anext(chunks))
        assert parser.retry == 3000
        assert live_topics() == ["public:a"]

        await get_channel().topic("public:a").apublish(b"line 1\nline 2")
        events: list[Event] = []
        async with asyncio.timeout(5):
            while not events:
                events += parser.feed(await anext(chunks))
        assert events == [Event("line 1\nline 2")]
        while "keep-alive" not in parser.comments:
            parser.feed(await anext(chunks))

        # What Django's ASGI handler does once the body is sent.
        await sync_to_async(response.close)()
        assert live_topics() == []

    asyncio.run(scenario())


def test_asgi_disconnect_cancels_the_stream_and_closes_its_subscription() -> None:
    async def scenario() -> None:
        response = await AsyncClient().get("/broadcast/public:gone")
        assert isinstance(response, EventStreamResponse)
        first = asyncio.Event()

        async def send_body() -> None:  # Consumes the body the way Django's ASGI handler does.
            parts = aiter(response)
            assert isinstance(parts, AsyncGenerator)
            async with aclosing(parts) as body:
                async for _ in body:
                    first.set()

        sender = asyncio.create_task(send_body())
        async with asyncio.timeout(5):
            await first.wait()
        assert live_topics() == ["public:gone"]
        sender.cancel()  # The handler cancels the response task when the client disconnects.
        with pytest.raises(asyncio.CancelledError):
            await sender
        assert live_topics() == []

    asyncio.run(scenario())


def test_a_gap_is_announced_before_the_messages_after_it(client: Client, settings: Any) -> None:
    settings.BROADCAST_CHANNELS = {"default": {"BACKEND": MEMORY, "OPTIONS": {"buffer_size": 2}}}
    response, reader = stream(client, "/broadcast/public:slow")
    topic = get_channel().topic("public:slow")
    for number in range(5):
        topic.publish(str(number).encode())
    # Messages 0-2 were dropped; the reader learns of it before message 3.
    assert reader.events_of(3) == [Event("", "gap"), Event("3"), Event("4")]
    topic.publish(b"5")
    assert reader.events_of(4)[3] == Event("5")  # One gap, announced once.
    response.close()


def test_closing_the_channel_ends_the_stream(client: Client) -> None:
    response, reader = stream(client, "/broadcast/public:end")
    reader.until(lambda r: r.parser.retry is not None)
    get_channel().close()
    assert reader.parser.feed(b"".join(reader.chunks)) == []  # The stream ended.
    response.close()


def _only_beta(request: HttpRequest, topic: str) -> bool:
    return topic == "beta"


class OtherChannelStream(BroadcastStreamView):
    channel_alias = "other"
    # A plain function: it must not become a method.
    authorizer: Callable[[HttpRequest, str], bool] = _only_beta
    heartbeat = 0.01
    retry = 0.5


@pytest.mark.parametrize(
    "view",
    [
        OtherChannelStream.as_view(),
        BroadcastStreamView.as_view(channel_alias="other", authorizer=_only_beta, retry=0.5),
        BroadcastStreamView.as_view(
            channel_alias="other", authorizer=f"{__name__}._only_beta", retry=0.5
        ),
    ],
)
def test_subclasses_and_as_view_set_alias_and_authorizer(view: Any, settings: Any) -> None:
    settings.BROADCAST_STREAM_AUTHORIZER = None
    factory = RequestFactory()
    assert view(factory.get("/"), topic="alpha").status_code == 403
    response = view(factory.get("/"), topic="beta")
    assert response.status_code == 200
    reader = Reader(sync_chunks(response))
    assert reader.until(lambda r: r.parser.retry is not None).parser.retry == 500
    assert live_topics("other") == ["beta"]
    assert live_topics("default") == []
    response.close()
    assert live_topics("other") == []


def test_an_unconfirmed_subscription_is_503(
    client: Client, settings: Any, restartable_redis: RedisServer
) -> None:
    settings.BROADCAST_CHANNELS = {
        "default": {
            "BACKEND": REDIS,
            "LOCATION": restartable_redis.url,
            "OPTIONS": {"subscribe_timeout": 0.3},
        }
    }
    restartable_redis.pause()
    try:
        response = client.get("/broadcast/public:down")
    finally:
        restartable_redis.resume()
    assert response.status_code == 503
    assert response["Retry-After"] == "3"
    assert live_topics() == []


def test_url_name_and_kwarg() -> None:
    assert reverse("broadcast_app:stream", kwargs={"topic": "jobs:1"}) == "/broadcast/jobs:1"
