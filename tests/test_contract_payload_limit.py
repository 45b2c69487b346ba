"""max_payload_bytes, on every backend: a larger publish raises before anything is sent,
and so cannot cost the other topics of the reader's shared connection anything."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app import PayloadTooLargeError, PublishError
from broadcast_app.backends.base import DEFAULT_MAX_PAYLOAD_BYTES
from broadcast_app.backends.memory import InMemoryBroadcastChannel
from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from broadcast_app.backends.streams import StreamsBroadcastChannel

from .waiting import QUIET, WAIT

if TYPE_CHECKING:
    from .conftest import ChannelFactory

#: Larger than any default, smaller than Redis's hard Pub/Sub output limit (32 MB).
HUGE = 30 * 1024 * 1024


def test_the_limit_is_inclusive_and_checked_before_anything_is_sent(
    channel_factory: ChannelFactory,
) -> None:
    channel = channel_factory(max_payload_bytes=1000)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        topic.publish(b"x" * 1000)
        assert sub.receive(WAIT) == b"x" * 1000
        for oversized in (b"y" * 1001, bytearray(1001), memoryview(b"z" * 5000)):
            with pytest.raises(PayloadTooLargeError, match="1000") as caught:
                topic.publish(oversized)
            assert isinstance(caught.value, ValueError)
            assert isinstance(caught.value, PublishError)
        with pytest.raises(PayloadTooLargeError):
            topic.as_producer().publish(b"e" * 1001, event="named")
        assert sub.receive(QUIET) is None
        assert channel.stats()["messages_published_total"] == 1


def test_the_async_publish_checks_the_limit_too(channel_factory: ChannelFactory) -> None:
    channel = channel_factory(max_payload_bytes=10)
    topic = channel.topic(channel_factory.topic_name())

    async def publish_and_receive() -> None:
        async with topic.subscribe() as sub:
            with pytest.raises(PayloadTooLargeError):
                await topic.apublish(b"0123456789!")
            await topic.apublish(b"0123456789")
            assert await sub.areceive(WAIT) == b"0123456789"

    asyncio.run(publish_and_receive())


def test_a_30_mb_publish_raises_and_costs_the_other_topics_nothing(
    channel_factory: ChannelFactory,
) -> None:
    channel = channel_factory()
    huge, other = (channel.topic(channel_factory.topic_name()) for _ in range(2))
    with huge.subscribe() as huge_sub, other.subscribe() as other_sub:
        other.publish(b"before")
        assert other_sub.receive(WAIT) == b"before"
        with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
            huge.publish(bytes(HUGE))
        other.publish(b"after")
        assert other_sub.receive(WAIT) == b"after"
        assert huge_sub.receive(QUIET) is None
        assert (other_sub.gaps, huge_sub.gaps) == (0, 0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1000", None])
def test_max_payload_bytes_must_be_a_positive_int(
    channel_factory: ChannelFactory, bad: object
) -> None:
    with pytest.raises(ValueError, match="max_payload_bytes"):
        channel_factory(max_payload_bytes=bad)


@pytest.mark.parametrize(
    ("backend_class", "location"),
    [
        (InMemoryBroadcastChannel, None),
        (RedisBroadcastChannel, "redis://127.0.0.1:1/0"),
        (ShardedRedisBroadcastChannel, "redis://127.0.0.1:1/0"),
        (ShardedRedisBroadcastChannel, ["redis://127.0.0.1:1"]),
        (StreamsBroadcastChannel, "redis://127.0.0.1:1/0"),
    ],
)
def test_max_payload_bytes_is_an_option_of_every_backend(backend_class: Any, location: Any) -> None:
    # Nothing listens there: settings are read without I/O.
    with backend_class.from_settings(location, {"max_payload_bytes": 4096}) as channel:
        assert channel.max_payload_bytes == 4096
    with backend_class.from_settings(location, {}) as channel:
        assert channel.max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024
