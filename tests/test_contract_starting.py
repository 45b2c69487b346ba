"""Closing a subscription that is still starting: its consumer wakes at once.

A Redis server frozen with SIGSTOP holds the confirmation (SUBSCRIBE, SSUBSCRIBE, the
stream probe, or the cluster's topology discovery) for as long as the test wants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app import SubscriptionClosedError
from localservers import RedisServer

from .conftest import BACKENDS
from .waiting import PROMPTLY, WAIT, blocked

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task

REDIS_BACKENDS = [name for name in BACKENDS if name != "memory"]


def _enter(sub: Any) -> None:
    with pytest.raises(SubscriptionClosedError):
        sub.__enter__()


def _receive(sub: Any) -> None:
    with pytest.raises(SubscriptionClosedError):
        sub.receive(timeout=None)


def _iterate(sub: Any) -> None:
    assert list(sub) == []


def _aiterate(sub: Any) -> None:
    async def consume() -> list[bytes]:
        return [message async for message in sub]

    assert asyncio.run(consume()) == []


def _aenter(sub: Any) -> None:
    async def enter() -> None:
        with pytest.raises(SubscriptionClosedError):
            await sub.__aenter__()

    asyncio.run(enter())


STARTS: dict[str, Callable[[Any], None]] = {
    "enter": _enter,
    "receive": _receive,
    "iterate": _iterate,
    "aiterate": _aiterate,
    "aenter": _aenter,
}


@pytest.mark.parametrize("backend", REDIS_BACKENDS)
@pytest.mark.parametrize("start", list(STARTS))
def test_close_wakes_a_consumer_blocked_in_starting(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    background: type[Task],
    record_property: Callable[[str, object], None],
    start: str,
) -> None:
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())
    sub = topic.subscribe()

    def consume() -> float:
        STARTS[start](sub)
        return time.monotonic()

    restartable_redis.pause()
    try:
        consumer = background(consume)
        blocked(consumer)  # Redis is frozen: nothing confirms the subscription.
        closed_at = time.monotonic()
        sub.close()
        latency = consumer.result(WAIT) - closed_at
    finally:
        restartable_redis.resume()
    record_property("close_wakes_starting_seconds", latency)
    print(f"close() woke the starting consumer after {latency * 1000:.1f} ms")
    assert latency < PROMPTLY


@pytest.mark.parametrize("backend", ["redis-resp3", "sharded", "streams"])
def test_closing_one_starting_subscription_leaves_the_others_starting(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())
    closed, kept = topic.subscribe(), topic.subscribe()
    restartable_redis.pause()
    try:
        gone = background(_enter, closed)
        waiting = background(kept.__enter__)
        blocked(gone, waiting)
        closed.close()
        gone.result(PROMPTLY)
        blocked(waiting)  # The other subscription still waits for the confirmation.
    finally:
        restartable_redis.resume()
    with waiting.result(WAIT) as sub:
        topic.publish(b"confirmed after all")
        assert sub.receive(WAIT) == b"confirmed after all"


def test_close_an_active_subscription_should_stop_iteration(
    channel: Any, topic_name: str, background: type[Task]
) -> None:
    topic = channel.topic(topic_name)
    sub = topic.subscribe()
    received: list[bytes] = []

    def consume() -> float:
        for message in sub:
            received.append(message)
        return time.monotonic()

    consumer = background(consume)
    deadline = time.monotonic() + WAIT
    while not received and time.monotonic() < deadline:
        topic.publish(b"ping")
        time.sleep(0.02)
    closed_at = time.monotonic()
    sub.close()
    assert consumer.result(WAIT) - closed_at < PROMPTLY
    assert set(received) == {b"ping"}
