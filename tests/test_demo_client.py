"""broadcast.js, the app's browser client, in headless Chromium against a real uvicorn.

Scripted streams (``testing/script/``, testproject/testing_urls.py) give the client
exact wire input, statuses and timings; the stream view on a private Redis gives it
the real thing: a 503 while Redis is down, a gap when Redis restarts, and a replay
after a web server restart on the Streams backend.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page

from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.backends.streams import StreamsBroadcastChannel
from broadcast_app.tokens import stream_url
from localservers import RedisServer

from .demo_fixtures import RECONNECT_AFTER_DRAIN, ClientPage, RecordedStream
from .django_fixtures import WebServer
from .waiting import WAIT, holds_for, wait_until

#: A reconnection delay short enough for tests, in milliseconds.
FAST_RETRY = 100
#: Seconds the Redis channels of the test project wait for a subscription to start.
SUBSCRIBE_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """This module's own Redis: its tests stop and restart it."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[WebServer]:
    with WebServer("uvicorn", redis_server) as server:
        yield server


@pytest.fixture
def client(page: Page, server: WebServer) -> ClientPage:
    return ClientPage(page, server)


class Script:
    """A scripted stream URL: its n-th request gets the n-th response (the last repeats)."""

    def __init__(self, server: WebServer, *responses: dict[str, Any]) -> None:
        self.server = server
        key = uuid.uuid4().hex
        self.path = f"/testing/script/{key}"
        self.url = f"{self.path}?responses={quote(json.dumps(responses))}"

    def attempts(self) -> list[dict[str, Any]]:
        """Each request's arrival time (s) and Last-Event-ID, in order."""
        response = httpx.get(self.server.url + self.path + "/attempts", timeout=WAIT)
        attempts: list[dict[str, Any]] = response.json()
        return attempts


def publish(redis_server: RedisServer, topic: str, payload: bytes) -> None:
    channel = RedisBroadcastChannel.from_url(redis_server.url)
    try:
        channel.topic(topic).publish(payload)
    finally:
        channel.close()


def stream(*chunks: str, hold: bool = False) -> dict[str, Any]:
    return {"chunks": list(chunks), "hold": hold}


def events(recorded: RecordedStream) -> list[tuple[str, Any]]:
    return [(event["type"], event["data"]) for event in recorded.events()]


def test_events_are_parsed_as_the_standard_says(server: WebServer, client: ClientPage) -> None:
    binary = base64.b64encode(b"\xff\x00raw").decode()
    script = Script(
        server,
        stream(
            "\ufeff: a comment, and a byte order mark before it\n\n",
            "data: first line\r",  # A CRLF split across two writes.
            "\ndata: second line\r\n\r\n",
            'data: {"looks": "like JSON"}\n\n',
            'event: progress\ndata: {"percent": 50,\ndata:  "done": false}\n\n',
            f"event: binary\ndata: {binary}\n\n",
            "event: gap\ndata: \n\n",
            "id: 7\ndata: with an id\n\n",
            "id: 8\0\nretry: soon\ndata: NUL voids an id, a bad retry is ignored\n\n",
            "data\n\n",
            "event: progress\n\n",  # No data: no event.
            "data: never completed",
        ),
        stream(hold=True),
    )
    recorded = client.follow(script.url, retry=FAST_RETRY)
    recorded.wait_for_state("open", 2)
    assert events(recorded) == [
        ("message", "first line\nsecond line"),
        ("message", '{"looks": "like JSON"}'),  # Plain messages stay text.
        ("progress", {"percent": 50, "done": False}),
        ("binary", [0xFF, 0x00, *b"raw"]),
        ("message", "with an id"),
        ("message", "NUL voids an id, a bad retry is ignored"),
        ("message", ""),
    ]
    assert [event["id"] for event in recorded.events()][-3:] == ["7", "7", "7"]
    assert [entry["kind"] for entry in recorded.log()].count("gap") == 1
    assert [attempt["last_event_id"] for attempt in script.attempts()] == [None, "7"]


def test_it_waits_as_retry_says_and_resumes_after_the_last_event_id(
    server: WebServer, client: ClientPage
) -> None:
    script = Script(
        server,
        stream("retry: 700\n\n", "id: a-1\ndata: one\n\n"),
        stream("id: a-2\ndata: two\n\n"),
        stream(hold=True),
    )
    recorded = client.follow(script.url, lastEventId="a-0")
    states = recorded.wait_for_state("open", 3)
    first, second, third = script.attempts()
    assert [first["last_event_id"], second["last_event_id"], third["last_event_id"]] == [
        "a-0",
        "a-1",
        "a-2",
    ]
    # Each stream ended, and the client came back after the retry the server asked for,
    # stretched by a jitter of at most a quarter.
    waits = [state["delay"] for state in states if state["state"] == "waiting"]
    assert len(waits) == 2
    assert all(700 <= wait <= 875 for wait in waits), waits
    assert second["at"] - first["at"] >= 0.7
    assert third["at"] - second["at"] >= 0.7
    assert [state["reconnect"] for state in states if state["state"] == "open"] == [
        False,
        True,
        True,
    ]


def test_a_503_is_retried_no_sooner_than_its_retry_after(
    server: WebServer, client: ClientPage
) -> None:
    script = Script(
        server,
        {"status": 503, "headers": {"Retry-After": "2"}},
        stream("data: back\n\n", hold=True),
    )
    recorded = client.follow(script.url, retry=FAST_RETRY)
    recorded.wait_for(lambda log: any(e["kind"] == "event" for e in log))
    first, second = script.attempts()
    assert second["at"] - first["at"] >= 2.0
    (waiting,) = [state for state in recorded.states() if state["state"] == "waiting"]
    assert waiting["status"] == 503
    assert 2000 <= waiting["delay"] <= 2000 * 1.25 + FAST_RETRY
    assert events(recorded) == [("message", "back")]


def test_an_http_date_retry_after_is_understood(client: ClientPage) -> None:
    wait = client.page.evaluate(
        "broadcast.parseRetryAfter(new Date(Date.now() + 60000).toUTCString())"
    )
    assert 58_000 <= wait <= 60_000
    assert client.page.evaluate("broadcast.parseRetryAfter('soon')") is None


def test_failures_back_off_exponentially_up_to_a_cap(server: WebServer, client: ClientPage) -> None:
    script = Script(server, {"status": 500})
    recorded = client.follow(script.url, retry=FAST_RETRY, maxRetry=800)
    states = recorded.wait_for_state("waiting", 6)
    recorded.close()
    waits = [state["delay"] for state in states if state["state"] == "waiting"][:6]
    for failure, wait in enumerate(waits):
        floor = min(800, FAST_RETRY * 2**failure)
        assert floor <= wait <= min(800, floor * 1.25), waits
    assert waits[-2:] == [800, 800]
    assert all(state["status"] == 500 for state in states if state["state"] == "waiting")


def test_a_refusal_closes_the_stream_for_good(server: WebServer, client: ClientPage) -> None:
    script = Script(server, {"status": 403})
    recorded = client.follow(script.url, retry=FAST_RETRY)
    states = recorded.wait_for_state("closed")
    assert states[-1]["reason"] == "refused"
    assert states[-1]["status"] == 403
    refused_on = len(script.attempts())
    assert holds_for(lambda: len(script.attempts()) == refused_on, 1.0)
    assert refused_on == 1


def test_a_terminal_event_ends_the_stream_and_close_ends_another(
    server: WebServer, client: ClientPage
) -> None:
    ending = Script(
        server,
        stream(
            'event: progress\ndata: {"step": 1}\n\n',
            'event: done\ndata: {"ok": true}\n\n',
            "data: after the end\n\n",
            hold=True,
        ),
    )
    recorded = client.follow(ending.url, retry=FAST_RETRY, stopOn=["done", "failed"])
    states = recorded.wait_for_state("closed")
    assert states[-1]["reason"] == "terminal"
    assert events(recorded) == [("progress", {"step": 1}), ("done", {"ok": True})]

    held = Script(server, stream("data: live\n\n", hold=True))
    other = client.follow(held.url, retry=FAST_RETRY)
    other.wait_for(lambda log: any(e["kind"] == "event" for e in log))
    other.close()
    assert other.states()[-1]["reason"] == "closed"
    assert other.state() == "closed"
    assert holds_for(lambda: len(ending.attempts()) + len(held.attempts()) == 2, 1.0)


def test_a_silent_connection_is_dropped_after_the_idle_timeout(
    server: WebServer, client: ClientPage
) -> None:
    # A held scripted stream sends a keep-alive every 15 s: silence, as far as 0.5 s go.
    script = Script(server, stream("data: hello\n\n", hold=True))
    recorded = client.follow(script.url, retry=FAST_RETRY, idleTimeout=500)
    states = recorded.wait_for_state("open", 2)
    waiting = [state for state in states if state["state"] == "waiting"]
    assert waiting[0]["reason"] == "failed"
    first, second = script.attempts()[:2]
    assert second["at"] - first["at"] >= 0.5
    recorded.close()


def test_it_retries_the_stream_view_while_redis_is_down(
    redis_server: RedisServer, server: WebServer, client: ClientPage
) -> None:
    redis_server.kill()
    try:
        recorded = client.follow("/broadcast/public:outage", retry=FAST_RETRY)
        # The view answers 503 once the channel's subscribe_timeout (10 s) has passed.
        states = recorded.wait_for_state("waiting", timeout=SUBSCRIBE_TIMEOUT + WAIT)
    finally:
        redis_server.restart()
    # The view asks for 3 s (its retry); the client's own 100 ms does not cut that short.
    assert states[-1]["status"] == 503
    assert states[-1]["delay"] >= 3000
    recorded.wait_for_state("open")
    assert wait_until(lambda: redis_server.numsub("public:outage") == 1, WAIT)
    publish(redis_server, "public:outage", b"after the outage")
    recorded.wait_for(lambda log: any(e["kind"] == "event" for e in log))
    assert events(recorded) == [("message", "after the outage")]


def test_a_gap_reaches_the_page_when_redis_restarts(
    redis_server: RedisServer, server: WebServer, client: ClientPage
) -> None:
    recorded = client.follow("/broadcast/public:restart", retry=FAST_RETRY)
    recorded.wait_for_state("open")
    redis_server.restart()
    # The engine subscribes again behind the same response; the stream announces the gap
    # with the next message.
    assert wait_until(lambda: redis_server.numsub("public:restart") == 1, WAIT)
    publish(redis_server, "public:restart", b"after the restart")
    log = recorded.wait_for(lambda log: any(e["kind"] == "event" for e in log))
    assert [entry["kind"] for entry in log if entry["kind"] != "state"] == ["gap", "event"]
    assert [state["state"] for state in recorded.states()] == ["connecting", "open"]


def test_after_a_web_server_restart_it_resumes_where_it_was(page: Page) -> None:
    with RedisServer() as redis_server:
        channel = StreamsBroadcastChannel.from_url(redis_server.url)
        topic = channel.topic("public:resume")
        web = WebServer("uvicorn", redis_server, BROADCAST_BACKEND="streams").start()
        try:
            client = ClientPage(page, web)
            recorded = client.follow("/broadcast/public:resume", retry=FAST_RETRY)
            recorded.wait_for_state("open")
            topic.publish(b"before")
            recorded.wait_for(lambda log: len(recorded.events()) == 1)
            port = web.port
            web.stop()
            recorded.wait_for_state("waiting")
            topic.publish(b"while the server was away")
            web = WebServer("uvicorn", redis_server, BROADCAST_BACKEND="streams")
            web.port = port
            web.start()
            recorded.wait_for_state("open", 2, timeout=RECONNECT_AFTER_DRAIN + WAIT)
            topic.publish(b"after")
            recorded.wait_for(lambda log: len(recorded.events()) == 3)
        finally:
            web.stop()
            channel.close()
    assert [event["data"] for event in recorded.events()] == [
        "before",
        "while the server was away",
        "after",
    ]
    assert not any(entry["kind"] == "gap" for entry in recorded.log())


def test_at_the_stream_limit_it_waits_for_a_free_slot(page: Page) -> None:
    # Token URLs: the fast path of testproject.asgi (with_streams) serves them.
    limit = {"DJANGO_SETTINGS_MODULE": "tests.stream_settings", "BROADCAST_STREAM_MAX_STREAMS": "1"}
    with RedisServer() as redis_server, WebServer("uvicorn", redis_server, **limit) as web:
        client = ClientPage(page, web)
        first = client.follow(stream_url("public:limit"), retry=FAST_RETRY)
        first.wait_for_state("open")
        second = client.follow(stream_url("public:limit"), retry=FAST_RETRY)
        (waiting,) = [s for s in second.wait_for_state("waiting") if s["state"] == "waiting"]
        assert waiting["status"] == 503
        assert waiting["delay"] >= 3000  # The Retry-After of the view's retry, 3 s.
        first.close()
        second.wait_for_state("open", timeout=WAIT + 3)
        publish(redis_server, "public:limit", b"one at a time")
        second.wait_for(lambda log: any(e["kind"] == "event" for e in log))
    assert events(second) == [("message", "one at a time")]
