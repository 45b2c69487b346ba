"""Redis faults: a killed and restarted server, a frozen one, publishing and subscribing meanwhile.

Subscriptions must survive every fault without help from their user, report a gap,
and the engine logs the loss at WARNING and the recovery at INFO.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest
import redis

from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.exceptions import (
    BroadcastChannelError,
    PublishError,
    SubscriptionClosedError,
)
from localservers import RedisServer

from .channel_helpers import both_protocols, engine_threads, resp3
from .waiting import PROMPTLY, WAIT, blocked, holds_for, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str) -> bool:
    return any(
        record.name == "broadcast_app" and record.levelno == level and text in record.getMessage()
        for record in caplog.records
    )


def enter(subscription: object) -> object:
    return subscription.__enter__()  # type: ignore[attr-defined]


# -- a killed server ---------------------------------------------------------------------------


@both_protocols
def test_subscriptions_survive_a_redis_restart(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    background: type[Task],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broadcast_app")
    server = restartable_redis
    channel = channel_factory(server=server)
    name, other_name = channel_factory.topic_name(), channel_factory.topic_name()
    topic, other = channel.topic(name), channel.topic(other_name)
    with topic.subscribe() as iterated, topic.subscribe() as polled, other.subscribe() as third:
        received: list[bytes] = []

        def consume() -> None:
            for message in iterated:
                received.append(message)
                if message == b"after":
                    return

        consumer = background(consume)
        topic.publish(b"before")
        assert polled.receive(WAIT) == b"before"

        server.kill()
        assert wait_until(lambda: polled.gaps == 1, WAIT), "the loss was not noticed"
        assert (iterated.gaps, third.gaps) == (1, 1)
        assert logged(caplog, logging.WARNING, "Lost the Redis Pub/Sub connection")

        server.restart()
        assert wait_until(lambda: server.numsub(name) == server.numsub(other_name) == 1, WAIT)
        topic.publish(b"after")
        other.publish(b"after")
        assert polled.receive(WAIT) == b"after"
        assert third.receive(WAIT) == b"after"
        consumer.result(WAIT)
        assert received == [b"before", b"after"]
        assert wait_until(lambda: logged(caplog, logging.INFO, "Reconnected"), WAIT)
        assert (polled.gaps, polled.dropped) == (1, 0)
        assert len(server.subscriber_ids()) == 1


@resp3
def test_several_restarts_in_a_row(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    before = set(threading.enumerate())
    server = restartable_redis
    channel = channel_factory(server=server)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as sub:
        for cycle in range(1, 4):
            server.kill()
            assert wait_until(lambda: sub.gaps == cycle, WAIT), (cycle, sub.gaps)
            server.restart()
            assert wait_until(lambda: server.numsub(name) == 1, WAIT), cycle
            topic.publish(b"cycle %d" % cycle)
            assert sub.receive(WAIT) == b"cycle %d" % cycle
        assert sub.gaps == 3
        # No connection or thread was left behind by the reconnects.
        assert len(server.subscriber_ids()) == 1
        assert len(server.clients()) <= 2, server.clients()
        assert len(engine_threads(before)) == 1


@resp3
def test_a_restart_resubscribes_every_topic(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    # More topics than one re-subscription command carries.
    names = [f"many:{number}" for number in range(1200)]
    with ExitStack() as stack:
        subs = [stack.enter_context(channel.topic(name).subscribe()) for name in names]
        assert [int(c["sub"]) for c in server.clients() if int(c["sub"]) > 0] == [1200]
        server.kill()
        assert wait_until(lambda: all(sub.gaps == 1 for sub in subs), WAIT)
        server.restart()
        assert wait_until(
            lambda: [int(c["sub"]) for c in server.clients() if int(c["sub"]) > 0] == [1200],
            WAIT,
        )
        for sub in subs[:: len(subs) // 12]:
            channel.topic(sub.topic).publish(sub.topic.encode())
            assert sub.receive(WAIT) == sub.topic.encode()
    assert wait_until(lambda: server.subscriber_ids() == [], PROMPTLY)


def test_publishing_while_redis_is_down_raises_publish_error(
    restartable_redis: RedisServer, no_thread_leaks: None
) -> None:
    channel = RedisBroadcastChannel.from_url(restartable_redis.url)
    try:
        topic = channel.topic("down")
        topic.publish(b"warms up the connection pool")
        restartable_redis.kill()
        # First with the pooled connection to the dead server, then with refused connects.
        for attempt in range(2):
            started = time.monotonic()
            with pytest.raises(PublishError, match="'down'") as caught:
                topic.publish(b"lost")
            assert time.monotonic() - started < 3.0, attempt
            assert isinstance(caught.value.__cause__, redis.ConnectionError), attempt
        restartable_redis.restart()
        topic.publish(b"accepted again")
    finally:
        channel.close()


def test_publishing_to_a_frozen_redis_fails_within_the_clients_timeout(
    restartable_redis: RedisServer, no_thread_leaks: None
) -> None:
    channel = RedisBroadcastChannel.from_url(restartable_redis.url, socket_timeout=0.3)
    try:
        topic = channel.topic("frozen")
        topic.publish(b"warms up the connection pool")
        restartable_redis.pause()
        try:
            started = time.monotonic()
            with pytest.raises(PublishError) as caught:
                topic.publish(b"lost")
            elapsed = time.monotonic() - started
        finally:
            restartable_redis.resume()
        # Three attempts of at most socket_timeout each, with short pauses between them.
        assert 0.3 <= elapsed < 3 * 0.3 + 2.0
        assert isinstance(caught.value.__cause__, redis.TimeoutError)
    finally:
        channel.close()


# -- subscribing during an outage --------------------------------------------------------------


@resp3
def test_subscribing_during_an_outage_fails_after_subscribe_timeout(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server, subscribe_timeout=0.5)
    name, new_name = channel_factory.topic_name(), channel_factory.topic_name()
    live, new = channel.topic(name), channel.topic(new_name)
    with live.subscribe() as sub:
        server.kill()
        assert wait_until(lambda: sub.gaps == 1, WAIT)
        # A listened topic waits for the re-subscription as much as a new one.
        for topic in (live, new):
            attempt = topic.subscribe()
            started = time.monotonic()
            with pytest.raises(BroadcastChannelError, match="confirm"):
                attempt.__enter__()
            assert 0.45 <= time.monotonic() - started < 0.5 + PROMPTLY
            assert attempt.closed
        server.restart()
        assert wait_until(lambda: server.numsub(name) == 1, WAIT)
        assert server.numsub(new_name) == 0
        live.publish(b"recovered")
        assert sub.receive(WAIT) == b"recovered"
        with new.subscribe() as late:
            new.publish(b"no stale state")
            assert late.receive(WAIT) == b"no stale state"


@resp3
def test_subscribing_during_an_outage_waits_for_the_recovery(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    name, new_name = channel_factory.topic_name(), channel_factory.topic_name()
    live, new = channel.topic(name), channel.topic(new_name)
    with live.subscribe() as sub:
        server.kill()
        assert wait_until(lambda: sub.gaps == 1, WAIT)
        pending = [background(enter, topic.subscribe()) for topic in (live, new)]
        blocked(*pending)  # Not confirmed while Redis is down.
        server.restart()
        joined, late = (task.result(WAIT) for task in pending)
        try:
            live.publish(b"live")
            new.publish(b"new")
            assert [sub.receive(WAIT), joined.receive(WAIT), late.receive(WAIT)] == [
                b"live",
                b"live",
                b"new",
            ]
            assert (joined.gaps, late.gaps) == (0, 0)
        finally:
            joined.close()
            late.close()


@resp3
def test_a_channel_made_while_redis_is_down_connects_when_it_comes_up(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    background: type[Task],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broadcast_app")
    server = restartable_redis
    channel = channel_factory(server=server)
    topic = channel.topic(channel_factory.topic_name())
    server.kill()
    pending = background(enter, topic.subscribe())
    assert wait_until(lambda: logged(caplog, logging.WARNING, "Cannot connect"), WAIT)
    assert pending.is_alive()
    server.restart()
    with pending.result(WAIT) as sub:
        topic.publish(b"first contact")
        assert sub.receive(WAIT) == b"first contact"
        assert sub.gaps == 0
    assert logged(caplog, logging.INFO, "Reconnected")


@resp3
def test_closing_during_an_outage_is_prompt(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    before = set(threading.enumerate())
    channel = channel_factory(server=restartable_redis)
    with channel.topic(channel_factory.topic_name()).subscribe() as sub:
        restartable_redis.kill()
        assert wait_until(lambda: sub.gaps == 1, WAIT)
        started = time.monotonic()
        channel.close()
        assert time.monotonic() - started < PROMPTLY
        assert engine_threads(before) == []
        with pytest.raises(SubscriptionClosedError):
            sub.receive(0)


# -- a frozen server (half-open connection) -----------------------------------------------------


@both_protocols
def test_a_frozen_server_is_detected_by_health_checks(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broadcast_app")
    server = restartable_redis
    channel = channel_factory(server=server, health_check_interval=0.5)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as sub:
        topic.publish(b"before")
        assert sub.receive(WAIT) == b"before"
        (old_connection,) = server.subscriber_ids()
        server.pause()
        try:
            # Detected while the server is still frozen: nothing but the health check can tell.
            assert wait_until(lambda: sub.gaps == 1, WAIT), "the frozen server went unnoticed"
            assert logged(caplog, logging.WARNING, "health check")
            # The reader connects again, to the frozen server: it waits for the handshake.
            assert wait_until(lambda: server.unaccepted_connections() > 0, WAIT)
        finally:
            server.resume()
        assert wait_until(lambda: server.subscriber_ids() not in ([], [old_connection]), WAIT)
        assert len(server.subscriber_ids()) == 1
        topic.publish(b"after")
        assert sub.receive(WAIT) == b"after"
        assert sub.gaps == 1
        assert wait_until(lambda: logged(caplog, logging.INFO, "Reconnected"), WAIT)


@both_protocols
def test_health_checks_keep_a_healthy_idle_connection(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server, health_check_interval=0.2)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        connections = server.subscriber_ids()
        # The behaviour under test: idle for several health-check intervals.
        assert holds_for(lambda: server.subscriber_ids() == connections and sub.gaps == 0, 1.5)
        assert server.command_calls("ping") >= 2, "no health check was sent"
        topic.publish(b"still connected")
        assert sub.receive(WAIT) == b"still connected"


@resp3
def test_closing_while_reconnecting_to_a_frozen_server_is_prompt(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    before = set(threading.enumerate())
    channel = channel_factory(server=restartable_redis, health_check_interval=0.3)
    with channel.topic(channel_factory.topic_name()).subscribe() as sub:
        restartable_redis.pause()
        try:
            assert wait_until(lambda: sub.gaps == 1, WAIT)
            # The reader connects again, to the frozen server: it waits for the handshake.
            assert wait_until(lambda: restartable_redis.unaccepted_connections() > 0, WAIT)
            started = time.monotonic()
            channel.close()
            assert time.monotonic() - started < PROMPTLY
            assert engine_threads(before) == []
        finally:
            restartable_redis.resume()
