"""Readers come back as soon as Redis does: within a fraction of a second of the
server answering again, however long the outage lasted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from localservers import RedisServer

from .waiting import WAIT

if TYPE_CHECKING:
    from .conftest import ChannelFactory

#: Long enough for an exponential backoff to have grown to seconds.
OUTAGE = 4.0
#: Generous guard on a loaded machine; the target is 250 ms.
RESUMED_WITHIN = 1.0


@pytest.mark.parametrize(
    "backend", ["redis-resp2", "redis-resp3", "sharded", "streams", "streams-resp2"]
)
def test_a_reader_resumes_soon_after_redis_is_back(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    record_property: Callable[[str, object], None],
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        topic.publish(b"before")
        assert sub.receive(WAIT) == b"before"
        server.kill()
        time.sleep(OUTAGE)
        resumed = restart_and_time_the_reader(server, channel, topic, sub)
    record_property("resumed_after_seconds", resumed)
    print(f"first message {resumed * 1000:.0f} ms after Redis answered again")
    assert resumed < RESUMED_WITHIN


def restart_and_time_the_reader(server: RedisServer, channel: Any, topic: Any, sub: Any) -> float:
    """Restart the killed ``server``; return the seconds from its answering PING to the
    first message ``sub`` receives, publishing until one arrives."""
    server.restart()  # Returns once the server answers PING.
    answered_at = time.monotonic()
    # Only the reader's recovery is timed: the publisher's pooled connections are dead,
    # and its client's retry policy would add its own backoff.
    channel.client.connection_pool.disconnect()
    received = None
    while received is None and time.monotonic() < answered_at + WAIT:
        topic.publish(b"after")
        received = sub.receive(0.005)
    assert received is not None, "the reader never came back"
    resumed = time.monotonic() - answered_at
    while sub.receive(0.05) is not None:
        pass  # The other copies of "after".
    return resumed


#: Restarts in a row, each after the reader was back for RECONNECTED_FOR seconds.
RESTARTS = 6
RECONNECTED_FOR = 1.5


@pytest.mark.parametrize("backend", ["redis-resp3", "sharded", "streams"])
def test_a_reader_resumes_soon_after_each_of_several_restarts(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    record_property: Callable[[str, object], None],
) -> None:
    """Connections that served for a while before Redis died are no flapping server."""
    server = restartable_redis
    channel = channel_factory(server=server)
    topic = channel.topic(channel_factory.topic_name())
    resumed: list[float] = []
    with topic.subscribe() as sub:
        topic.publish(b"before")
        assert sub.receive(WAIT) == b"before"
        for _ in range(RESTARTS):
            time.sleep(RECONNECTED_FOR)  # The reader is back and serving.
            server.kill()
            resumed.append(restart_and_time_the_reader(server, channel, topic, sub))
    record_property("resumed_after_seconds", resumed)
    print("first message after each restart (ms):", [round(r * 1000) for r in resumed])
    assert max(resumed) < RESUMED_WITHIN
