"""The asyncio twins of the contract, on every backend: no thread per consumer.

Each test drives its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app import SubscriptionClosedError

from .waiting import PROMPTLY, WAIT, ablocked

if TYPE_CHECKING:
    from .conftest import ChannelFactory


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` on a new event loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_async_with_and_areceive(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> None:
        async with topic.subscribe() as sub:
            await topic.apublish(b"hello")
            topic.publish(b"sync publish")
            assert await sub.areceive(WAIT) == b"hello"
            assert await sub.areceive(WAIT) == b"sync publish"

    run(main())


def test_first_areceive_starts_the_subscription(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> None:
        sub = topic.subscribe()
        try:
            assert await sub.areceive(timeout=0) is None
            await topic.apublish(b"after the first areceive")
            assert await sub.areceive(WAIT) == b"after the first areceive"
        finally:
            await sub.aclose()

    run(main())


def test_async_for_keeps_publish_order(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> list[bytes]:
        got: list[bytes] = []
        async with topic.subscribe() as sub:
            for number in range(20):
                await topic.apublish(b"%d" % number)
            async for message in sub:
                got.append(message)
                if len(got) == 20:
                    break
        return got

    assert run(main()) == [b"%d" % number for number in range(20)]


def test_async_for_starts_the_subscription(channel: Any, topic_name: str) -> None:
    """Everything published after ``async for`` started arrives: the numbers are consecutive."""
    topic = channel.topic(topic_name)

    async def main() -> list[int]:
        sub = topic.subscribe()

        async def consume() -> list[int]:
            got: list[int] = []
            async for message in sub:
                got.append(int(message))
                if len(got) == 30:
                    break
            return got

        consumer = asyncio.create_task(consume())
        number = 0
        try:
            while not consumer.done():
                await topic.apublish(str(number).encode())
                number += 1
                await asyncio.sleep(0.002)  # Paced, and the consumer gets the loop.
            return await consumer
        finally:
            await sub.aclose()

    got = run(main())
    assert got == list(range(got[0], got[0] + 30))


def test_apublish_rejects_what_is_not_bytes(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> None:
        async with topic.subscribe() as sub:
            for bad in ("text", 42, None):
                with pytest.raises(TypeError, match="bytes"):
                    await topic.apublish(bad)
            await topic.as_producer().apublish(memoryview(b"view"))
            assert await sub.areceive(WAIT) == b"view"

    run(main())


def test_binary_payloads_round_trip(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    payloads = [bytes(range(256)), b"", os.urandom(1 << 20)]

    async def main() -> list[bytes | None]:
        async with topic.subscribe() as sub:
            for payload in payloads:
                await topic.apublish(payload)
            return [await sub.areceive(WAIT) for _ in payloads]

    assert run(main()) == payloads


@pytest.mark.parametrize("timeout", [0.05, 0.3])
def test_areceive_returns_none_after_the_timeout(
    channel: Any, topic_name: str, timeout: float
) -> None:
    async def main() -> float:
        async with channel.topic(topic_name).subscribe() as sub:
            started = time.monotonic()
            assert await sub.areceive(timeout) is None
            return time.monotonic() - started

    assert timeout * 0.9 <= run(main()) < timeout + PROMPTLY


@pytest.mark.parametrize(("bad", "error"), [(-1, ValueError), ("1", TypeError)])
def test_areceive_rejects_a_bad_timeout(
    channel: Any, topic_name: str, bad: object, error: type[Exception]
) -> None:
    async def main() -> None:
        async with channel.topic(topic_name).subscribe() as sub:
            with pytest.raises(error, match="timeout"):
                await sub.areceive(bad)

    run(main())


def test_aclose_wakes_a_blocked_areceive(
    channel: Any, topic_name: str, record_property: Callable[[str, object], None]
) -> None:
    async def main() -> float:
        async with channel.topic(topic_name).subscribe() as sub:
            receiver = asyncio.create_task(sub.areceive(None))
            await ablocked(receiver)
            closed_at = time.monotonic()
            await sub.aclose()
            with pytest.raises(SubscriptionClosedError):
                await asyncio.wait_for(receiver, PROMPTLY)
            return time.monotonic() - closed_at

    latency = run(main())
    record_property("aclose_wakes_areceive_seconds", latency)
    assert latency < PROMPTLY


def test_aclose_ends_a_blocked_async_for(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> list[bytes]:
        sub = topic.subscribe()

        async def consume() -> list[bytes]:
            return [message async for message in sub]

        consumer = asyncio.create_task(consume())
        await ablocked(consumer)
        await sub.aclose()
        return await asyncio.wait_for(consumer, PROMPTLY)

    assert run(main()) == []


def test_close_from_another_thread_wakes_a_task(channel: Any, topic_name: str) -> None:
    async def main() -> None:
        async with channel.topic(topic_name).subscribe() as sub:
            receiver = asyncio.create_task(sub.areceive(None))
            await ablocked(receiver)
            await asyncio.to_thread(sub.close)
            with pytest.raises(SubscriptionClosedError):
                await asyncio.wait_for(receiver, PROMPTLY)

    run(main())


def test_publish_from_another_thread_wakes_a_task(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> bytes | None:
        async with topic.subscribe() as sub:
            receiver = asyncio.create_task(sub.areceive(None))
            await ablocked(receiver)
            await asyncio.to_thread(topic.publish, b"from a thread")
            return await asyncio.wait_for(receiver, WAIT)

    assert run(main()) == b"from a thread"


def test_closed_subscription_receives_and_yields_nothing(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> None:
        never_started = topic.subscribe()
        await never_started.aclose()
        async with topic.subscribe() as started:
            await topic.apublish(b"buffered, then discarded")
        await started.aclose()
        for sub in (never_started, started):
            with pytest.raises(SubscriptionClosedError):
                await sub.areceive()
            with pytest.raises(SubscriptionClosedError):
                await sub.areceive(None)
            assert [message async for message in sub] == []

    run(main())


def test_cancelled_areceive_leaves_the_subscription_usable(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> None:
        async with topic.subscribe() as sub:
            receiver = asyncio.create_task(sub.areceive(None))
            await ablocked(receiver)
            receiver.cancel()
            with pytest.raises(asyncio.CancelledError):
                await receiver
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(sub.areceive(None), 0.05)

            await topic.apublish(b"after the cancellations")
            assert await sub.areceive(WAIT) == b"after the cancellations"
            receiver = asyncio.create_task(sub.areceive(None))
            await ablocked(receiver)
            await topic.apublish(b"to a new waiter")
            assert await asyncio.wait_for(receiver, WAIT) == b"to a new waiter"

            receiver = asyncio.create_task(sub.areceive(None))
            await ablocked(receiver)
            receiver.cancel()
            await sub.aclose()
        with pytest.raises(asyncio.CancelledError):
            await receiver
        with pytest.raises(SubscriptionClosedError):
            await sub.areceive(0)

    run(main())


def test_many_async_subscribers_share_one_loop_without_threads(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    subscribers, count = 100, 10

    async def main() -> tuple[list[list[bytes | None]], int]:
        threads_before = threading.active_count()
        async with AsyncExitStack() as stack:
            subs = [await stack.enter_async_context(topic.subscribe()) for _ in range(subscribers)]

            async def consume(sub: Any) -> list[bytes | None]:
                return [await sub.areceive(None) for _ in range(count)]

            consumers = [asyncio.create_task(consume(sub)) for sub in subs]
            await ablocked(*consumers)  # Every consumer waits for its first message.
            extra_threads = threading.active_count() - threads_before
            for number in range(count):
                topic.publish(b"%d" % number)
            return await asyncio.gather(*consumers), extra_threads

    received, extra_threads = run(main())
    # A Redis backend runs one reader thread for all subscriptions; the rest run on the loop.
    assert extra_threads <= 1
    assert received == [[b"%d" % number for number in range(count)]] * subscribers


def test_loops_in_several_threads_each_get_their_messages(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    loops, subscribers_per_loop = 3, 10
    ready = threading.Barrier(loops + 1)

    async def consume_on_this_loop() -> list[bytes | None]:
        async with AsyncExitStack() as stack:
            subs = [
                await stack.enter_async_context(topic.subscribe())
                for _ in range(subscribers_per_loop)
            ]
            await asyncio.to_thread(ready.wait, WAIT)
            received: list[bytes | None] = await asyncio.gather(
                *(sub.areceive(WAIT) for sub in subs)
            )
            return received

    results: list[Any] = [None] * loops

    def loop_thread(index: int) -> None:
        results[index] = run(consume_on_this_loop())

    threads = [threading.Thread(target=loop_thread, args=(index,)) for index in range(loops)]
    for thread in threads:
        thread.start()
    ready.wait(WAIT)
    topic.publish(b"to every loop")
    for thread in threads:
        thread.join(WAIT * 2)
    assert results == [[b"to every loop"] * subscribers_per_loop] * loops


def test_channel_serves_one_event_loop_after_another(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def round_trip(payload: bytes) -> bytes | None:
        async with topic.subscribe() as sub:
            await topic.apublish(payload)
            received: bytes | None = await sub.areceive(WAIT)
            return received

    assert run(round_trip(b"first loop")) == b"first loop"
    assert run(round_trip(b"second loop")) == b"second loop"


def test_slow_async_subscriber_keeps_the_newest_messages(channel_factory: ChannelFactory) -> None:
    channel = channel_factory(buffer_size=2)
    topic = channel.topic(channel_factory.topic_name())

    async def main() -> None:
        async with topic.subscribe() as slow, topic.subscribe() as fast:
            for number in range(10):
                await topic.apublish(b"%d" % number)
                assert await fast.areceive(WAIT) == b"%d" % number
            deadline = time.monotonic() + WAIT
            while slow.dropped < 8 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert (slow.dropped, slow.gaps) == (8, 1)
            assert [await slow.areceive(WAIT) for _ in range(2)] == [b"8", b"9"]

    run(main())
