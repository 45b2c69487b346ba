"""The ASGI fast path (``broadcast_app.asgi.with_streams``) behind a real uvicorn, on a real
Redis: what it serves, the token rules, its thread use, and the URL checks. The Django
view answers requests without a token; its answers carry the headers of Django's
``SecurityMiddleware``, the fast path's do not, which tells the two paths apart."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from django.test import override_settings

from broadcast_app.backends.streams import StreamsBroadcastChannel
from broadcast_app.tokens import stream_url
from localservers import RedisServer

from .django_fixtures import Event
from .stream_fixtures import FastPathServer, RawStream, new_topic, raw_streams, signed_url
from .waiting import WAIT, wait_until

OLD_KEY = "a-rotated-out-secret-key-" + "r" * 40
#: Streams of the thread-count test.
CLIENTS = 200


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[FastPathServer]:
    """The fast path on Redis Pub/Sub; OLD_KEY is a SECRET_KEY_FALLBACKS entry."""
    with FastPathServer(redis_server, SECRET_KEY_FALLBACKS=[OLD_KEY]) as running:
        yield running


@pytest.fixture
def publisher(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def via_django(response: httpx.Response) -> bool:
    return "x-content-type-options" in response.headers


def test_token_streams_are_served_by_the_fast_path(
    server: FastPathServer, redis_server: RedisServer, publisher: redis.Redis
) -> None:
    topic = new_topic("private")  # The authorizer refuses it: only the token allows.
    stream = RawStream(server.port, signed_url(topic))
    with raw_streams([stream]):
        assert stream.status == 200
        assert "content-type: text/event-stream; charset=utf-8" in stream.head.lower()
        assert "x-content-type-options" not in stream.head.lower()  # No Django middleware.
        stream.read_until(lambda: stream.retries)
        assert stream.retries == [3000]
        assert redis_server.numsub(topic) == 1  # Subscribed before the headers were sent.
        for payload in (b"plain", "multi\nline \u00e9".encode(), b"\x00\xff binary"):
            publisher.publish(topic, payload)
        stream.read_until(lambda: len(stream.events) >= 3)
        assert stream.events[:2] == [Event("plain"), Event("multi\nline \u00e9")]
        assert stream.events[2].type == "binary"
        assert base64.b64decode(stream.events[2].data) == b"\x00\xff binary"
        stream.read_until(lambda: "keep-alive" in stream.parser.comments)
    # http.disconnect releases the subscription at once, not at the next keep-alive.
    assert wait_until(lambda: redis_server.numsub(topic) == 0, WAIT)


def expired_url(topic: str) -> str:
    real_time = time.time
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: real_time() - 7200)
        return signed_url(topic, expires_in=60)


def tampered(url: str) -> str:
    return url[:-1] + ("A" if url[-1] != "A" else "B")


def other_channel_url(topic: str) -> str:
    memory = {"BACKEND": "broadcast_app.backends.memory.InMemoryBroadcastChannel"}
    with override_settings(BROADCAST_CHANNELS={"default": memory, "other": memory}):
        return signed_url(topic, channel="other")


def fallback_url(topic: str) -> str:
    with override_settings(SECRET_KEY=OLD_KEY):
        return signed_url(topic)


TOKEN_CASES: dict[str, tuple[Any, int, str]] = {
    "valid": (signed_url, 200, ""),
    "fallback key": (fallback_url, 200, ""),
    "tampered": (lambda topic: tampered(signed_url(topic)), 403, "not valid"),
    "expired": (expired_url, 403, "expired"),
    "other topic": (
        lambda topic: f"/broadcast/{topic}x?" + signed_url(topic).partition("?")[2],
        403,
        "not valid",
    ),
    "other channel": (other_channel_url, 403, "not valid"),
    "unknown key": (override_settings(SECRET_KEY="u" * 50)(stream_url), 403, "not valid"),
}


@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_token_rules_on_the_fast_path(
    server: FastPathServer, redis_server: RedisServer, case: str
) -> None:
    build, status, reason = TOKEN_CASES[case]
    topic = new_topic("private")
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        if status == 200:
            with client.stream("GET", build(topic)) as response:
                assert response.status_code == 200
                assert not via_django(response)
                assert redis_server.numsub(topic) == 1
            return
        response = client.get(build(topic))
    assert response.status_code == status
    assert not via_django(response)
    assert reason in response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert redis_server.numsub(topic) == 0


def test_without_a_token_the_django_view_and_its_authorizer_answer(
    server: FastPathServer,
) -> None:
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        refused = client.get(f"/broadcast/{new_topic('private')}")
        with client.stream("GET", f"/broadcast/{new_topic('public')}") as allowed:
            assert allowed.status_code == 200
            assert via_django(allowed)
    assert refused.status_code == 403
    assert via_django(refused)


@pytest.mark.parametrize("with_token", [False, True])
def test_post_to_a_stream_url_is_405(server: FastPathServer, with_token: bool) -> None:
    topic = new_topic("public")
    url = signed_url(topic) if with_token else f"/broadcast/{topic}"
    response = httpx.post(server.url + url, timeout=WAIT)
    assert response.status_code == 405


@pytest.mark.parametrize("with_token", [False, True])
@pytest.mark.parametrize(
    "path",
    ["public:a%FFb", "public:a%FEb", "public:%C3", "public:a/%2e%2e/b", "public:a/./b",
     "public:a//b", "public:a/", "public:100%25"],
)  # fmt: skip
def test_urls_that_alias_or_get_rewritten_are_400(
    server: FastPathServer, redis_server: RedisServer, path: str, with_token: bool
) -> None:
    query = "?" + signed_url("public:ok").partition("?")[2] if with_token else ""
    # A raw socket: HTTP clients would normalise the path before sending it.
    stream = RawStream(server.port, f"/broadcast/{path}{query}")
    with raw_streams([stream]):
        assert stream.status == 400
    assert redis_server.numsub("public:a\ufffdb") == 0


def test_hundreds_of_fast_path_streams_add_no_threads(
    server: FastPathServer, redis_server: RedisServer, publisher: redis.Redis
) -> None:
    topic = new_topic("private")
    url = signed_url(topic)
    with raw_streams([RawStream(server.port, url)]) as warm_up:
        warm_up[0].read_until(lambda: warm_up[0].retries)  # The Redis reader runs now.
        idle = server.threads()
        with raw_streams([RawStream(server.port, url) for _ in range(CLIENTS)]) as streams:
            assert [stream.status for stream in streams] == [200] * CLIENTS
            busy = server.threads()
            publisher.publish(topic, b"to everyone")
            for stream in streams:
                stream.read_until(lambda s=stream: s.events)
                assert stream.events == [Event("to everyone")]
    assert busy <= idle + 3, (idle, busy)
    assert wait_until(lambda: redis_server.numsub(topic) == 0, WAIT)


@pytest.fixture(scope="module")
def streams_server(redis_server: RedisServer) -> Iterator[FastPathServer]:
    with FastPathServer(redis_server, backend="streams") as running:
        yield running


def test_on_streams_the_start_cursor_comes_first_and_last_event_id_replays(
    streams_server: FastPathServer, redis_server: RedisServer
) -> None:
    topic = new_topic("private")
    url = signed_url(topic)
    with StreamsBroadcastChannel.from_url(redis_server.url) as channel:
        first = RawStream(streams_server.port, url)
        with raw_streams([first]):
            first.read_until(lambda: first.ids)
            start = first.ids[0]  # Sent before any message: a resume point with no loss.
            assert first.events == []
            for payload in (b"one", b"two"):
                channel.topic(topic).publish(payload)
            first.read_until(lambda: len(first.events) == 2)
            assert first.ids[1:] != [start]
        # A browser that dropped before its first event resumes from the start cursor...
        again = RawStream(streams_server.port, url, Last_Event_ID=start)
        # ... and one that saw "one" resumes after it.
        later = RawStream(streams_server.port, url, Last_Event_ID=first.ids[1])
        with raw_streams([again, later]):
            again.read_until(lambda: len(again.events) == 2)
            later.read_until(lambda: len(later.events) == 1)
        assert [event.data for event in again.events] == ["one", "two"]
        assert [event.data for event in later.events] == ["two"]
        bad = httpx.get(streams_server.url + url, headers={"Last-Event-ID": "x"}, timeout=WAIT)
        assert bad.status_code == 400
