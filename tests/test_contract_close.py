"""The contract on closing, run against every backend: idempotent, prompt, leak-free."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app import SubscriptionClosedError

from .channel_helpers import drop_and_collect
from .waiting import PROMPTLY, WAIT, blocked

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task


def test_close_is_idempotent(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    never_started = topic.subscribe()
    never_started.close()
    never_started.close()
    with topic.subscribe() as started:
        started.close()
        started.close()
    started.close()


def test_close_from_other_threads(channel: Any, topic_name: str, background: type[Task]) -> None:
    with channel.topic(topic_name).subscribe() as sub:
        start = threading.Barrier(8)

        def close() -> None:
            start.wait()
            sub.close()

        for task in [background(close) for _ in range(8)]:
            task.result()
        with pytest.raises(SubscriptionClosedError):
            sub.receive(0)


def test_close_wakes_a_blocked_receive(
    channel: Any,
    topic_name: str,
    record_property: Callable[[str, object], None],
    background: type[Task],
) -> None:
    with channel.topic(topic_name).subscribe() as sub:

        def consume() -> float:
            with pytest.raises(SubscriptionClosedError):
                sub.receive(timeout=None)
            return time.monotonic()

        consumer = background(consume)
        blocked(consumer)
        closed_at = time.monotonic()
        sub.close()
        latency = consumer.result() - closed_at
    record_property("close_wakes_receive_seconds", latency)
    assert latency < PROMPTLY


@pytest.mark.parametrize("entered", [True, False], ids=["entered", "started-by-iterator"])
def test_close_ends_a_blocked_iterator(
    channel: Any,
    topic_name: str,
    entered: bool,
    record_property: Callable[[str, object], None],
    background: type[Task],
) -> None:
    topic = channel.topic(topic_name)
    sub = topic.subscribe()
    if entered:
        sub.__enter__()
    got: list[bytes] = []
    first_arrived = threading.Event()

    def consume() -> float:
        for message in sub:
            got.append(message)
            first_arrived.set()
        return time.monotonic()

    consumer = background(consume)
    try:
        # Without the context manager the iterator subscribes in its thread: retry until then.
        while not first_arrived.wait(0.05):
            topic.publish(b"first")
        blocked(consumer)  # Iterating on, waiting for a next message.
    finally:
        closed_at = time.monotonic()
        sub.close()
    latency = consumer.result() - closed_at
    record_property("close_ends_iterator_seconds", latency)
    assert latency < PROMPTLY
    assert got[0] == b"first"


def test_closed_subscription_receives_and_yields_nothing(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    never_started = topic.subscribe()
    never_started.close()
    with topic.subscribe() as started, topic.subscribe() as witness:
        topic.publish(b"buffered, then discarded")
        # A topic's subscriptions get a message in the order they joined: once the witness
        # has it, ``started`` holds it in its buffer.
        assert witness.receive(WAIT) == b"buffered, then discarded"
    for sub in (never_started, started):
        with pytest.raises(SubscriptionClosedError):
            sub.receive()
        with pytest.raises(SubscriptionClosedError):
            sub.receive(timeout=None)
        assert list(sub) == []


def test_closing_the_channel_closes_its_subscriptions(
    channel_factory: ChannelFactory, background: type[Task]
) -> None:
    channel = channel_factory()
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as iterated, topic.subscribe() as received:

        def receive() -> None:
            with pytest.raises(SubscriptionClosedError):
                received.receive(timeout=None)

        consumers = [background(list, iterated), background(receive)]
        blocked(*consumers)
        channel.close()
        assert consumers[0].result(PROMPTLY) == []
        consumers[1].result(PROMPTLY)
        with pytest.raises(SubscriptionClosedError):
            iterated.receive(0)


def test_unclosed_subscription_is_released_by_the_garbage_collector(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    sub = topic.subscribe()
    assert sub.receive(0) is None
    subs = [sub]
    del sub
    with pytest.warns(ResourceWarning, match=topic_name):
        drop_and_collect(subs)
    with topic.subscribe() as sub:
        topic.publish(b"still works")
        assert sub.receive(WAIT) == b"still works"
