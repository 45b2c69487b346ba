"""Slow and stalled clients behind a real uvicorn, on a real Redis: a stalled client's backlog
is bounded in bytes (oldest dropped, then a ``gap``), clients that hang up with full
backlogs do not freeze the other streams, and the ``"disconnect"`` policy ends a stream
stalled too long. A stalled client is a raw socket with a tiny SO_RCVBUF that stops
reading."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from localservers import RedisServer

from .django_fixtures import Event
from .stream_fixtures import FastPathServer, RawStream, new_topic, raw_streams, signed_url
from .waiting import WAIT, wait_until

#: SO_RCVBUF of a stalled client: the kernel soon stops taking the server's bytes.
TINY_BUFFER = 4096
#: Stalled clients of the latency test, and the size of the messages they do not read.
STALLED = 20
BIG = 100 * 1024
#: The healthy client's worst latency while the stalled ones hang up (it froze for 9-20 s
#: before; a generous bound for a loaded machine).
MAX_LATENCY = 1.0


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[FastPathServer]:
    """Default stream settings: a 1 MiB byte bound and the ``"drop"`` policy."""
    with FastPathServer(redis_server) as running:
        yield running


@pytest.fixture
def publisher(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def stream_path(topic: str, fast: bool) -> str:
    """A stream URL served by the fast path (token) or by the Django view (authorizer)."""
    return signed_url(topic) if fast else f"/broadcast/{topic}"


def opened(stream: RawStream) -> RawStream:
    assert stream.status == 200, stream.head
    stream.read_until(lambda: stream.retries)
    return stream


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "view"])
def test_a_stalled_client_holds_a_bounded_backlog_then_gets_a_gap(
    server: FastPathServer, publisher: redis.Redis, fast: bool
) -> None:
    topic = new_topic("public")
    count, size = 1000, 10 * 1024  # 10 MB, ten times the byte bound.
    stream = opened(RawStream(server.port, stream_path(topic, fast), receive_buffer=TINY_BUFFER))
    with raw_streams([stream]):
        for seq in range(count):
            publisher.publish(topic, f"{seq}:".encode().ljust(size, b"."))
        time.sleep(1.0)  # The behaviour under test: the server receives all while stalled.
        stream.read_until(lambda: any(e.data.startswith(f"{count - 1}:") for e in stream.events))
    received = [int(e.data.partition(":")[0]) for e in stream.events if e.type == "message"]
    assert Event("", "gap") in stream.events
    assert received == sorted(received)  # In order, the oldest dropped.
    # Delivered: what the sockets held, plus at most 1 MiB pending in the subscription.
    assert len(received) < count / 2, len(received)
    assert received[-1] == count - 1


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "view"])
def test_clients_hanging_up_with_full_backlogs_do_not_freeze_other_streams(
    server: FastPathServer, redis_server: RedisServer, publisher: redis.Redis, fast: bool
) -> None:
    stalled_topic, healthy_topic = new_topic("public"), new_topic("public")
    healthy = opened(RawStream(server.port, signed_url(healthy_topic)))
    stalled = [
        opened(RawStream(server.port, stream_path(stalled_topic, fast), receive_buffer=TINY_BUFFER))
        for _ in range(STALLED)
    ]
    with raw_streams([healthy, *stalled]):
        for _ in range(30):  # 3 MB each: every backlog reaches the 1 MiB bound.
            publisher.publish(stalled_topic, b"x" * BIG)
        time.sleep(1.0)  # The behaviour under test: the backlogs fill while stalled.

        done = threading.Event()

        def publish_timestamps() -> None:
            with redis_server.client() as client:
                while not done.wait(0.02):
                    client.publish(healthy_topic, repr(time.time()).encode())

        ticker = threading.Thread(target=publish_timestamps)
        ticker.start()
        latencies: list[float] = []
        try:
            hung_up = False
            while len(latencies) < 150:
                before = len(healthy.events)
                healthy.read_until(lambda before=before: len(healthy.events) > before)
                now = time.time()
                latencies += [now - float(e.data) for e in healthy.events[before:]]
                if not hung_up and len(latencies) >= 25:
                    hung_up = True
                    for stream in stalled:
                        stream.close()
        finally:
            done.set()
            ticker.join()
    assert max(latencies) < MAX_LATENCY, sorted(latencies)[-5:]
    assert wait_until(lambda: redis_server.numsub(stalled_topic) == 0, WAIT)


@pytest.fixture(scope="module")
def strict_server(redis_server: RedisServer) -> Iterator[FastPathServer]:
    """The ``"disconnect"`` slow-client policy after 1 s stalled."""
    with FastPathServer(
        redis_server,
        BROADCAST_STREAM_SLOW_CLIENT="disconnect",
        BROADCAST_STREAM_STALL_TIMEOUT=1,
    ) as running:
        yield running


def test_the_disconnect_policy_ends_a_stream_stalled_too_long(
    strict_server: FastPathServer, redis_server: RedisServer, publisher: redis.Redis
) -> None:
    stalled_topic, other_topic = new_topic("private"), new_topic("private")
    stalled = opened(
        RawStream(strict_server.port, signed_url(stalled_topic), receive_buffer=TINY_BUFFER)
    )
    idle = opened(RawStream(strict_server.port, signed_url(other_topic)))
    with raw_streams([stalled, idle]):
        assert redis_server.numsub(stalled_topic) == 1
        # 12.5 MB: more than the kernel's socket buffers take (tcp_wmem allows 4 MB).
        for seq in range(250):
            publisher.publish(stalled_topic, f"{seq}:".encode().ljust(50 * 1024, b"."))
        # The stalled stream ends (its subscription goes); the idle one is not stalled.
        assert wait_until(lambda: redis_server.numsub(stalled_topic) == 0, WAIT)
        assert redis_server.numsub(other_topic) == 1
        publisher.publish(other_topic, b"still here")
        idle.read_until(lambda: idle.events == [Event("still here")])
