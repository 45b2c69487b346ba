"""The semantics every backend meets, run against each entry of ``conftest.BACKENDS``.

Closing is covered in test_contract_close.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from contextlib import ExitStack, closing
from typing import TYPE_CHECKING, Any

import pytest

from localservers import RedisServer

from .waiting import PROMPTLY, QUIET, WAIT, holds_for, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task

# -- names and payloads ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, 1, b"news", ["news"]])
def test_topic_name_must_be_a_str(channel: Any, bad: object) -> None:
    with pytest.raises(TypeError, match="str"):
        channel.topic(bad)


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 1025, "line\nbreak", "nul\x00", "tab\there", "del\x7f"],
    ids=["empty", "too-long", "newline", "nul", "tab", "del"],
)
def test_topic_name_rejects_bad_values(channel: Any, bad: object) -> None:
    with pytest.raises(ValueError, match="topic name"):
        channel.topic(bad)


def test_topic_name_may_be_long_or_unicode(channel: Any, topic_name: str) -> None:
    for name in (topic_name.ljust(1024, "x"), f"ünïcödé 主题 {topic_name}"):
        topic = channel.topic(name)
        with topic.subscribe() as sub:
            topic.publish(b"hello")
            assert sub.receive(WAIT) == b"hello"
            assert sub.topic == name


@pytest.mark.parametrize("bad", ["text", 42, None, 1.5, [1, 2]])
def test_publish_rejects_what_is_not_bytes(channel: Any, topic_name: str, bad: object) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        with pytest.raises(TypeError, match="bytes"):
            topic.publish(bad)
        with pytest.raises(TypeError, match="bytes"):
            topic.as_producer().publish(bad)
        topic.publish(b"accepted")
        assert sub.receive(WAIT) == b"accepted"


def test_publish_type_check_comes_before_any_io(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())
    restartable_redis.kill()
    started = time.monotonic()
    with pytest.raises(TypeError):
        topic.publish("text")
    assert time.monotonic() - started < PROMPTLY


def test_publish_accepts_bytes_like_payloads(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        topic.publish(b"bytes")
        topic.publish(bytearray(b"bytearray"))
        topic.publish(memoryview(b"<memoryview>")[1:-1])
        got = [sub.receive(WAIT) for _ in range(3)]
    assert got == [b"bytes", b"bytearray", b"memoryview"]
    assert all(type(message) is bytes for message in got)


def test_publish_without_subscribers_is_harmless(channel: Any, topic_name: str) -> None:
    channel.topic(topic_name).publish(b"nobody listens")


PAYLOADS = {
    "all-byte-values": bytes(range(256)),
    "empty": b"",
    "line-breaks-and-nul": b"\r\n\x00\n\r",
    "one-mebibyte": os.urandom(1 << 20),
}


def test_binary_payloads_round_trip(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        for payload in PAYLOADS.values():
            topic.publish(payload)
        for name, payload in PAYLOADS.items():
            assert sub.receive(WAIT) == payload, name


def test_iteration_yields_empty_payloads(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        topic.publish(b"")
        topic.publish(b"end")
        messages = iter(sub)
        assert next(messages) == b""
        assert next(messages) == b"end"


# -- delivery ----------------------------------------------------------------------------------


def test_delivers_what_is_published_right_after_enter(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        topic.publish(b"first")
        assert sub.receive(WAIT) == b"first"


def test_first_receive_starts_the_subscription(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    sub = topic.subscribe()
    try:
        assert sub.receive(timeout=0) is None
        topic.publish(b"after the first receive")
        assert sub.receive(WAIT) == b"after the first receive"
    finally:
        sub.close()


def test_first_next_starts_the_subscription(
    channel: Any, topic_name: str, background: type[Task]
) -> None:
    """Everything published after the iterator started arrives, so the numbers are consecutive."""
    topic = channel.topic(topic_name)
    sub = topic.subscribe()
    done = threading.Event()

    def publish_numbers() -> None:
        number = 0
        while not done.is_set():
            topic.publish(str(number).encode())
            number += 1
            time.sleep(0.002)  # Paced: the consumer must start while messages flow.

    def consume() -> list[int]:
        messages = iter(sub)
        return [int(next(messages)) for _ in range(50)]

    publisher = background(publish_numbers)
    consumer = background(consume)
    try:
        got = consumer.result(WAIT * 2)
    finally:
        done.set()
        sub.close()
        publisher.result()
    assert got == list(range(got[0], got[0] + 50))


def test_order_is_kept_per_publisher_thread(
    channel_factory: ChannelFactory, background: type[Task]
) -> None:
    publishers, count = 4, 300
    channel = channel_factory(buffer_size=publishers * count)
    topic = channel.topic(channel_factory.topic_name())
    start = threading.Barrier(publishers)

    def publish(publisher: int) -> None:
        start.wait()
        for number in range(count):
            topic.publish(f"{publisher}:{number}".encode())

    with topic.subscribe() as sub:
        tasks = [background(publish, publisher) for publisher in range(publishers)]
        got = [sub.receive(WAIT) for _ in range(publishers * count)]
        for task in tasks:
            task.result()
        assert sub.receive(0.1) is None
        assert sub.dropped == 0
    assert None not in got
    sequences: defaultdict[str, list[int]] = defaultdict(list)
    for message in got:
        publisher, number = message.decode().split(":")
        sequences[publisher].append(int(number))
    assert sequences == {str(publisher): list(range(count)) for publisher in range(publishers)}


@pytest.mark.parametrize("start", ["enter", "receive"])
@pytest.mark.parametrize("names", ["same-topic", "new-topic-each-trial"])
def test_subscribe_publish_receive_trials_lose_nothing(
    channel: Any, channel_factory: ChannelFactory, start: str, names: str
) -> None:
    name = channel_factory.topic_name()
    for trial in range(200):
        if names == "new-topic-each-trial":
            name = channel_factory.topic_name()
        topic = channel.topic(name)
        # closing() leaves the start to the first receive().
        subscription = topic.subscribe()
        with subscription if start == "enter" else closing(subscription) as sub:
            if start == "receive":
                assert sub.receive(timeout=0) is None
            payload = f"trial {trial}".encode()
            topic.publish(payload)
            assert sub.receive(WAIT) == payload, f"trial {trial} lost its message"


def test_concurrent_subscribe_and_leave_on_one_topic_lose_nothing(
    channel: Any, topic_name: str, background: type[Task]
) -> None:
    """Two threads keep joining and leaving one topic; each must get what it publishes."""
    topic = channel.topic(topic_name)

    def churn(worker: int) -> None:
        for trial in range(100):
            mine = f"{worker}:{trial}".encode()
            with topic.subscribe() as sub:
                topic.publish(mine)
                while (message := sub.receive(WAIT)) != mine:
                    assert message is not None, f"worker {worker} lost trial {trial}"

    for task in [background(churn, worker) for worker in range(2)]:
        task.result(WAIT * 6)


def test_every_subscription_receives_every_message(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with ExitStack() as stack:
        subs = [stack.enter_context(topic.subscribe()) for _ in range(5)]
        for message in (b"a", b"b", b"c"):
            topic.publish(message)
        for sub in subs:
            assert [sub.receive(WAIT) for _ in range(3)] == [b"a", b"b", b"c"]
        late = stack.enter_context(topic.subscribe())
        topic.publish(b"d")
        for sub in [*subs, late]:
            assert sub.receive(WAIT) == b"d"
        assert late.receive(0) is None


def test_topics_are_isolated(channel: Any, topic_name: str) -> None:
    # Glob characters in names must not act as patterns.
    names = [topic_name, f"{topic_name}*", f"{topic_name}:child", f"{topic_name[:-1]}?"]
    with ExitStack() as stack:
        subs = {name: stack.enter_context(channel.topic(name).subscribe()) for name in names}
        for name in names:
            channel.topic(name).publish(name.encode())
        for name, sub in subs.items():
            assert sub.receive(WAIT) == name.encode()
        strays: list[str] = []

        def silent() -> bool:
            strays.extend(name for name, sub in subs.items() if sub.receive(0) is not None)
            return not strays

        assert holds_for(silent, QUIET), f"{strays} received another topic's message"


@pytest.mark.parametrize("pause", [0.0, 0.2], ids=["at-once", "after-a-pause"])
def test_topic_works_again_after_its_last_subscriber_left(
    channel: Any, topic_name: str, pause: float
) -> None:
    topic = channel.topic(topic_name)
    for round_ in range(3):
        with topic.subscribe() as sub:
            topic.publish(b"round %d" % round_)
            assert sub.receive(WAIT) == b"round %d" % round_
        time.sleep(pause)  # The behaviour under test: the topic left alone for a while.


def test_producer_and_subscriber_views(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    producer, subscriber = topic.as_producer(), topic.as_subscriber()
    assert not hasattr(producer, "subscribe")
    assert not hasattr(subscriber, "publish")
    with subscriber.subscribe() as sub:
        assert sub.topic == topic_name
        producer.publish(b"through the producer view")
        topic.publish(b"through the topic")
        assert sub.receive(WAIT) == b"through the producer view"
        assert sub.receive(WAIT) == b"through the topic"


# -- receive timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.05, 0.3])
def test_receive_returns_none_after_the_timeout(
    channel: Any, topic_name: str, timeout: float
) -> None:
    with channel.topic(topic_name).subscribe() as sub:
        started = time.monotonic()
        assert sub.receive(timeout=timeout) is None
        elapsed = time.monotonic() - started
    assert timeout * 0.9 <= elapsed < timeout + PROMPTLY


def test_receive_default_timeout_is_a_tenth_of_a_second(channel: Any, topic_name: str) -> None:
    with channel.topic(topic_name).subscribe() as sub:
        started = time.monotonic()
        assert sub.receive() is None
        elapsed = time.monotonic() - started
    assert 0.09 <= elapsed < 0.1 + PROMPTLY


@pytest.mark.parametrize(
    ("bad", "error"), [(-1, ValueError), (-0.001, ValueError), ("1", TypeError)]
)
def test_receive_rejects_a_bad_timeout(
    channel: Any, topic_name: str, bad: object, error: type[Exception]
) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        with pytest.raises(error, match="timeout"):
            sub.receive(timeout=bad)
        topic.publish(b"still usable")
        assert sub.receive(WAIT) == b"still usable"


# -- bounded buffers ---------------------------------------------------------------------------


def test_slow_subscriber_keeps_the_newest_messages_and_counts_drops(
    channel_factory: ChannelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="broadcast_app")
    channel = channel_factory(buffer_size=4)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as slow, topic.subscribe() as fast:
        # Lock-step with the fast subscriber: the full buffer of the slow one must not hold it up.
        for number in range(100):
            topic.publish(b"%d" % number)
            assert fast.receive(WAIT) == b"%d" % number
        assert wait_until(lambda: slow.dropped == 96, WAIT), slow.dropped
        assert [slow.receive(WAIT) for _ in range(4)] == [b"96", b"97", b"98", b"99"]
        assert slow.receive(0.05) is None
        assert slow.gaps == 1

        for number in range(100, 110):
            topic.publish(b"%d" % number)
            assert fast.receive(WAIT) == b"%d" % number
        assert wait_until(lambda: slow.dropped == 102, WAIT), slow.dropped
        assert [slow.receive(WAIT) for _ in range(4)] == [b"106", b"107", b"108", b"109"]
        assert slow.gaps == 2
        assert (fast.dropped, fast.gaps) == (0, 0)

    warnings = [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and topic.name in record.getMessage()
    ]
    assert 1 <= len(warnings) <= 2, [record.getMessage() for record in warnings]
