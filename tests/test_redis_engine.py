"""The Redis engine: one connection and one reader per process, shared confirmed subscriptions.

Each test has a redis-server of its own (``restartable_redis``), so client lists and
command statistics count this test's connections and commands only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.exceptions import BroadcastChannelError
from localservers import RedisServer

from .channel_helpers import (
    both_protocols,
    engine_threads,
    publishing,
    resp3,
    subscribe_and_deliver,
)
from .waiting import PROMPTLY, QUIET, WAIT, blocked, holds_for, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task


def first_message(subscription: Any) -> bytes:
    """Iterate ``subscription`` until its first message."""
    message: bytes = next(iter(subscription))
    return message


# -- resource accounting -----------------------------------------------------------------------


def test_a_thousand_subscriptions_share_one_connection_and_one_thread(
    restartable_redis: RedisServer, no_thread_leaks: None
) -> None:
    server = restartable_redis
    before = set(threading.enumerate())
    names = [f"load:{number}" for number in range(100)]
    channel = RedisBroadcastChannel.from_url(server.url)
    try:
        with ExitStack() as stack:
            subscribe_and_deliver(stack, channel, names, 1000)

            clients = server.clients()
            assert len(clients) <= 2, clients
            # One upstream subscription per topic, not per local subscription.
            assert [int(c["sub"]) for c in server.subscribers()] == [100], clients
            assert [server.numsub(name) for name in names] == [1] * 100
            new_threads = [t.name for t in threading.enumerate() if t not in before]
            assert len(new_threads) <= 3, new_threads
            assert len(engine_threads(before)) == 1, new_threads

        started = time.monotonic()
        assert wait_until(lambda: not server.subscribers(), PROMPTLY), server.clients()
        assert time.monotonic() - started < PROMPTLY
        assert [server.numsub(name) for name in names] == [0] * 100
    finally:
        channel.close()
    # The channel made its client with from_url(), so closing it closes every connection.
    assert wait_until(lambda: server.clients() == [], 2.0), server.clients()
    assert engine_threads(before) == []


@resp3
def test_closing_the_channel_releases_its_connection_and_reader(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    before = set(threading.enumerate())
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        topic.publish(b"x")
        assert sub.receive(WAIT) == b"x"
        assert len(restartable_redis.subscribers()) == 1
        assert len(engine_threads(before)) == 1
    channel.close()
    assert engine_threads(before) == []
    # The client was given to the channel, so its publishing connection stays.
    assert wait_until(lambda: len(restartable_redis.clients()) == 1, 2.0)
    assert restartable_redis.subscribers() == []


# -- confirmation ------------------------------------------------------------------------------


@both_protocols
@pytest.mark.parametrize("names", ["same-topic", "new-topic-each-trial"])
def test_a_message_published_by_another_client_right_after_enter_arrives(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, names: str
) -> None:
    channel = channel_factory(server=restartable_redis)
    publisher = restartable_redis.client()
    channel_factory.add_closer(publisher.close)
    name = channel_factory.topic_name()
    for trial in range(200):
        if names == "new-topic-each-trial":
            name = channel_factory.topic_name()
        with channel.topic(name).subscribe() as sub:
            payload = b"trial %d" % trial
            assert publisher.publish(name, payload) == 1, f"trial {trial}: not subscribed yet"
            assert sub.receive(WAIT) == payload, f"trial {trial} lost its message"


@both_protocols
def test_joining_a_topic_already_listened_to_sends_no_command(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as first:
        assert server.command_calls("subscribe") == 1
        with topic.subscribe() as second, topic.subscribe() as third:
            assert server.command_calls("subscribe") == 1
            topic.publish(b"shared")
            for sub in (first, second, third):
                assert sub.receive(WAIT) == b"shared"
        # Leaving while another local subscriber stays sends nothing either.
        assert holds_for(lambda: server.command_calls("unsubscribe") == 0, QUIET)
        topic.publish(b"still there")
        assert first.receive(WAIT) == b"still there"
    assert wait_until(lambda: server.command_calls("unsubscribe") == 1, PROMPTLY)
    assert server.command_calls("subscribe") == 1


@resp3
def test_joining_a_listened_topic_works_while_redis_is_frozen(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    channel = channel_factory(server=restartable_redis, subscribe_timeout=0.5)
    topic = channel.topic(channel_factory.topic_name())
    new_topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as first:
        restartable_redis.pause()
        try:
            started = time.monotonic()
            with topic.subscribe():
                assert time.monotonic() - started < 0.4
            # A topic the process does not listen to yet needs Redis to confirm it.
            started = time.monotonic()
            with pytest.raises(BroadcastChannelError, match="confirm"):
                new_topic.subscribe().__enter__()
            assert 0.45 <= time.monotonic() - started < 0.5 + PROMPTLY
        finally:
            restartable_redis.resume()
        topic.publish(b"after the freeze")
        assert first.receive(WAIT) == b"after the freeze"
        assert first.gaps == 0
    # The timed-out SUBSCRIBE was undone: the factory checks NUMSUB of both topics.


@both_protocols
def test_a_topic_can_be_left_and_joined_again_quickly_from_many_threads(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    workers, trials = 4, 50

    def churn(worker: int) -> None:
        for trial in range(trials):
            mine = f"{worker}:{trial}".encode()
            with topic.subscribe() as sub:
                topic.publish(mine)
                while (message := sub.receive(WAIT)) != mine:
                    assert message is not None, f"worker {worker} lost trial {trial}"

    for task in [background(churn, worker) for worker in range(workers)]:
        task.result(WAIT * 6)

    assert wait_until(lambda: server.numsub(name) == 0, PROMPTLY)
    # Each upstream SUBSCRIBE was matched by one UNSUBSCRIBE; none per local subscription.
    assert wait_until(
        lambda: server.command_calls("unsubscribe") == server.command_calls("subscribe"), PROMPTLY
    )
    assert 1 <= server.command_calls("subscribe") <= workers * trials
    with topic.subscribe() as late:
        assert server.numsub(name) == 1
        topic.publish(b"late")
        assert late.receive(WAIT) == b"late"


# -- idling ------------------------------------------------------------------------------------


def cpu_seconds(threads: list[threading.Thread]) -> float:
    """User plus system CPU time ``threads`` have used so far (from Linux's /proc)."""
    ticks = 0
    for thread in threads:
        with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
            # The fields after the parenthesised command name start at field 3.
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks += int(fields[14 - 3]) + int(fields[15 - 3])
    return ticks / os.sysconf("SC_CLK_TCK")


@resp3
def test_idle_subscriptions_use_no_cpu(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    before = set(threading.enumerate())
    channel = channel_factory(server=restartable_redis)
    topics = [channel.topic(channel_factory.topic_name()) for _ in range(10)]
    with ExitStack() as stack:
        subs = [stack.enter_context(topic.subscribe()) for topic in topics for _ in range(10)]
        # Some consumers wait in a blocked iteration, the others are not being read.
        consumers = [background(first_message, sub) for sub in subs[::10]]
        blocked(*consumers)
        ours = [thread for thread in threading.enumerate() if thread not in before]
        assert len(ours) == 11, [thread.name for thread in ours]
        ours_before, process_before = cpu_seconds(ours), time.process_time()
        time.sleep(1.0)  # The idle second measured.
        used_by_ours = cpu_seconds(ours) - ours_before
        used_by_process = time.process_time() - process_before
        # The reader and the blocked consumers; the process also runs other tests' idle
        # channels, so it gets a looser bound.
        assert used_by_ours < 0.05, f"100 idle subscriptions used {used_by_ours:.3f} s of CPU"
        assert used_by_process < 0.2, f"the process used {used_by_process:.3f} s of CPU"
        for topic in topics:
            topic.publish(b"wake up")
        for sub in subs[1:2] + subs[-1:]:
            assert sub.receive(WAIT) == b"wake up"
        for task in consumers:
            assert task.result(WAIT) == b"wake up"


@resp3
def test_receive_times_out_after_its_timeout_despite_other_traffic(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    channel = channel_factory(server=restartable_redis)
    quiet = channel.topic(channel_factory.topic_name())
    busy = channel.topic(channel_factory.topic_name())
    with (
        quiet.subscribe() as sub,
        busy.subscribe() as busy_sub,
        publishing(background, busy, b"noise", 0.01),
    ):
        assert busy_sub.receive(WAIT) == b"noise"
        started = time.monotonic()
        assert sub.receive(timeout=0.3) is None
        elapsed = time.monotonic() - started
    assert 0.28 <= elapsed < 0.3 + PROMPTLY


# -- slow consumers ----------------------------------------------------------------------------


@both_protocols
def test_a_slow_subscriber_does_not_hold_up_a_fast_one(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    background: type[Task],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="broadcast_app")
    channel = channel_factory(server=restartable_redis, buffer_size=10)
    publisher = restartable_redis.client()
    channel_factory.add_closer(publisher.close)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    total, burst = 200, 5
    with topic.subscribe() as slow, topic.subscribe() as fast:
        received: list[bytes] = []

        def consume() -> None:
            for message in fast:
                received.append(message)
                if len(received) == total:
                    return

        consumer = background(consume)
        for start in range(0, total, burst):
            for number in range(start, start + burst):
                publisher.publish(name, b"%03d" % number)
            # Bursts of half a buffer: the fast consumer cannot overflow however loaded.
            assert wait_until(lambda: len(received) == start + burst, WAIT), len(received)
        consumer.result()
        assert received == [b"%03d" % number for number in range(total)]
        assert (fast.dropped, fast.gaps) == (0, 0)

        assert wait_until(lambda: slow.dropped == total - 10, WAIT), slow.dropped
        assert [slow.receive(WAIT) for _ in range(10)] == [b"%03d" % n for n in range(190, 200)]
        assert slow.receive(0.05) is None
        assert slow.gaps == 1
    assert any(
        record.levelno == logging.WARNING and name in record.getMessage()
        for record in caplog.records
    )
