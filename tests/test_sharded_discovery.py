"""The first subscription of a cluster channel discovers the topology without holding
the channel up: no lock is held and no subscriber's thread is tied to it meanwhile."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from broadcast_app.exceptions import BroadcastChannelError, SubscriptionClosedError
from localservers import RedisServer

from .waiting import PROMPTLY, WAIT, blocked

if TYPE_CHECKING:
    from .conftest import Task


def _expect_closed(sub: object) -> None:
    with pytest.raises(SubscriptionClosedError):
        sub.__enter__()  # type: ignore[attr-defined]


def test_discovery_against_a_frozen_seed_blocks_nothing(
    restartable_redis: RedisServer, background: type[Task]
) -> None:
    channel = ShardedRedisBroadcastChannel.from_url([restartable_redis.url])
    try:
        restartable_redis.pause()
        try:
            first, second = channel.topic("first"), channel.topic("{other}second")
            waiting = [background(_expect_closed, first.subscribe())]
            blocked(*waiting)  # The seed is frozen: the discovery hangs.
            # Joining and leaving other topics does not wait for the discovery.
            late = second.subscribe()
            waiting.append(background(_expect_closed, late))
            blocked(*waiting)
            started = time.monotonic()
            late.close()
            waiting.pop().result(PROMPTLY)
            assert time.monotonic() - started < PROMPTLY
            blocked(waiting[0])
            started = time.monotonic()
            channel.close()
            assert time.monotonic() - started < PROMPTLY
            waiting[0].result(PROMPTLY)
        finally:
            restartable_redis.resume()
    finally:
        channel.close()


def test_a_failed_discovery_fails_the_waiting_subscriptions_and_is_retried(
    restartable_redis: RedisServer, background: type[Task]
) -> None:
    # A plain server is no cluster: building the cluster client fails.
    channel = ShardedRedisBroadcastChannel.from_url([restartable_redis.url], subscribe_timeout=5)
    try:
        for attempt in range(2):
            subs = [channel.topic(name).subscribe() for name in ("a", "b", "a")]
            tasks = [background(sub.__enter__) for sub in subs]
            for task in tasks:
                with pytest.raises(BroadcastChannelError, match="Cannot find the Redis Cluster"):
                    task.result(WAIT)
            assert all(sub.closed for sub in subs), attempt
    finally:
        channel.close()
