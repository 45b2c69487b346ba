"""Garbage-collected subscriptions and concurrent use of one Redis channel from many threads."""

from __future__ import annotations

import gc
import threading
import warnings
import weakref
from collections import defaultdict
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app.exceptions import SubscriptionClosedError
from localservers import RedisServer

from .channel_helpers import both_protocols, drop_and_collect, publishing, resp3
from .waiting import PROMPTLY, WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task

# -- garbage collection ------------------------------------------------------------------------


@resp3
@pytest.mark.parametrize("start", ["enter", "receive", "iterate"])
def test_an_unclosed_subscription_is_released_by_the_collector(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    background: type[Task],
    start: str,
) -> None:
    channel = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    sub = topic.subscribe()
    held: list[Any] = [sub]
    if start == "enter":
        sub.__enter__()
    elif start == "receive":
        assert sub.receive(0) is None
    else:

        def publish_once_subscribed() -> None:
            assert wait_until(lambda: restartable_redis.numsub(name) == 1, WAIT)
            topic.publish(b"first")

        messages = iter(sub)
        publisher = background(publish_once_subscribed)
        assert next(messages) == b"first"
        publisher.result()
        held.append(messages)
        del messages
    assert restartable_redis.numsub(name) == 1
    ref = weakref.ref(sub)
    del sub
    with pytest.warns(ResourceWarning, match=name):
        drop_and_collect(held)
    assert ref() is None, gc.get_referrers(ref())
    assert wait_until(lambda: restartable_redis.numsub(name) == 0, PROMPTLY)


@resp3
def test_nothing_keeps_a_subscription_alive_after_traffic_and_a_reconnect(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    channel = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as survivor:
        held: list[Any] = [topic.subscribe().__enter__()]
        topic.publish(b"one")
        assert held[0].receive(WAIT) == b"one"
        restartable_redis.kill()
        assert wait_until(lambda: held[0].gaps == 1, WAIT)
        restartable_redis.restart()
        assert wait_until(lambda: restartable_redis.numsub(name) == 1, WAIT)
        topic.publish(b"two")
        assert held[0].receive(WAIT) == b"two"
        ref = weakref.ref(held[0])
        with pytest.warns(ResourceWarning, match=name):
            drop_and_collect(held)
        assert ref() is None
        # The topic still has a subscriber, which keeps receiving.
        assert restartable_redis.numsub(name) == 1
        topic.publish(b"three")
        assert [survivor.receive(WAIT) for _ in range(3)] == [b"one", b"two", b"three"]
    assert wait_until(lambda: restartable_redis.numsub(name) == 0, PROMPTLY)


@resp3
def test_a_subscription_abandoned_in_a_worker_thread_is_released(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    channel = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()

    def abandon() -> None:
        channel.topic(name).subscribe().__enter__()

    with pytest.warns(ResourceWarning, match=name):  # noqa: PT031 - dropped in another thread
        background(abandon).result(WAIT)
        gc.collect()
    assert wait_until(lambda: restartable_redis.numsub(name) == 0, PROMPTLY)


@resp3
def test_a_subscription_never_started_needs_no_release(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    channel = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()
    held: list[Any] = [channel.topic(name).subscribe()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop_and_collect(held)
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert restartable_redis.numsub(name) == 0


# -- many threads --------------------------------------------------------------------------------


@both_protocols
def test_publishers_in_many_threads_keep_their_order_for_every_process(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    publishers, count = 8, 100
    channel = channel_factory(server=restartable_redis)
    # A second channel on the same server stands for another process.
    elsewhere = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()
    start = threading.Barrier(publishers)

    def publish(publisher: int) -> None:
        topic = channel.topic(name)
        start.wait()
        for number in range(count):
            topic.publish(f"{publisher}:{number}".encode())

    with channel.topic(name).subscribe() as here, elsewhere.topic(name).subscribe() as there:
        tasks = [background(publish, publisher) for publisher in range(publishers)]
        for task in tasks:
            task.result(WAIT * 2)
        for sub in (here, there):
            got = [sub.receive(WAIT) for _ in range(publishers * count)]
            assert None not in got
            sequences: defaultdict[str, list[int]] = defaultdict(list)
            for message in got:
                publisher, number = message.decode().split(":")
                sequences[publisher].append(int(number))
            expected = {str(publisher): list(range(count)) for publisher in range(publishers)}
            assert sequences == expected
            assert sub.dropped == 0


@both_protocols
def test_subscriptions_made_in_many_threads_at_once_are_all_confirmed(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    threads, topics = 16, 8
    for round_ in range(3):
        # A fresh channel each round: the first joins race with the reader's first connect.
        channel = channel_factory(server=restartable_redis)
        names = [channel_factory.topic_name(f"round{round_}") for _ in range(topics)]
        start = threading.Barrier(threads)

        def subscribe_and_receive(worker: int, names: list[str] = names) -> None:
            name = names[worker % topics]
            start.wait()
            with channel.topic(name).subscribe() as sub:
                mine = f"worker {worker}".encode()
                channel.topic(name).publish(mine)
                while (message := sub.receive(WAIT)) != mine:
                    assert message is not None, f"worker {worker} lost its message"

        for task in [background(subscribe_and_receive, worker) for worker in range(threads)]:
            task.result(WAIT * 2)
        assert wait_until(lambda: all(restartable_redis.numsub(n) == 0 for n in names), PROMPTLY)
        channel.close()


@resp3
def test_close_from_another_thread_while_messages_flow(
    restartable_redis: RedisServer, channel_factory: ChannelFactory, background: type[Task]
) -> None:
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())

    def drain(sub: Any, draining: threading.Event) -> None:
        while True:
            try:
                sub.receive(timeout=None)
            except SubscriptionClosedError:
                return
            draining.set()

    with ExitStack() as stack:
        stayer = stack.enter_context(topic.subscribe())
        leavers = [stack.enter_context(topic.subscribe()) for _ in range(4)]
        with publishing(background, topic, b"tick", 0.005):
            draining = [threading.Event() for _ in leavers]
            consumers = [background(drain, *pair) for pair in zip(leavers, draining, strict=True)]
            # Close while every leaver is receiving.
            assert wait_until(lambda: all(event.is_set() for event in draining), WAIT)
            closers = [background(sub.close) for sub in leavers]
            for task in closers + consumers:
                task.result(PROMPTLY)
            while stayer.receive(0) is not None:
                pass
            assert stayer.receive(WAIT) == b"tick"
