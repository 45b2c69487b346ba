"""The public contract's shapes on every backend: ``Message``, ``features``, ``buffer_bytes``.

Runs against each entry of ``conftest.BACKENDS``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broadcast_app import ChannelFeatures, CursorSubscription, CursorTopic, Message

from .waiting import WAIT


def test_features_are_declared_and_match_the_topics(
    channel: Any, topic_name: str, backend: str
) -> None:
    features = channel.features
    assert isinstance(features, ChannelFeatures)
    assert features.crosses_processes is (backend != "memory")
    assert features.keeps_history is backend.startswith("streams")
    assert isinstance(channel.topic(topic_name), CursorTopic) is features.keeps_history


def test_receive_message_has_one_shape_on_every_backend(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        topic.publish(b"hello")
        message = sub.receive_message(WAIT)
    assert isinstance(message, Message)
    assert message.payload == b"hello"
    assert message.event is None
    assert (message.cursor is not None) is channel.features.keeps_history


def test_areceive_message_is_the_async_twin(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)

    async def main() -> Message | None:
        async with topic.subscribe() as sub:
            await topic.apublish(b"hello")
            message: Message | None = await sub.areceive_message(WAIT)
            return message

    message = asyncio.run(main())
    assert message is not None
    assert message.payload == b"hello"


def test_subscriptions_of_a_topic_in_one_process_share_each_message(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as first, topic.subscribe() as second:
        topic.publish(b"shared")
        assert first.receive_message(WAIT) is second.receive_message(WAIT)


def test_buffer_bytes_drops_the_oldest_past_the_byte_bound(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe(buffer_bytes=25) as sub, topic.subscribe() as marker:
        for index in range(5):
            topic.publish(b"%d" % index * 10)
        topic.publish(b"end")
        # The marker has no byte bound: once it has "end", so has the hub dispatched
        # everything to ``sub``.
        while marker.receive(WAIT) != b"end":
            pass
        received: list[bytes] = []
        while (payload := sub.receive(0.2 if received else WAIT)) is not None:
            received.append(payload)
    # 25 bytes hold two 10-byte payloads with the 3-byte "end"; the newest always stays.
    assert received == [b"3" * 10, b"4" * 10, b"end"]
    assert sub.dropped == 3
    assert sub.gaps == 1


def test_a_message_larger_than_buffer_bytes_is_still_delivered(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe(buffer_bytes=4) as sub:
        topic.publish(b"0123456789")
        assert sub.receive(WAIT) == b"0123456789"
        assert sub.dropped == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_buffer_bytes_must_be_a_positive_int(channel: Any, topic_name: str, bad: object) -> None:
    with pytest.raises(ValueError, match="buffer_bytes"):
        channel.topic(topic_name).subscribe(buffer_bytes=bad)


@pytest.mark.parametrize("backend", ["streams", "streams-resp2"])
def test_cursor_subscription_knows_its_start_before_any_message(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    topic.publish(b"before")
    with topic.subscribe() as sub:
        assert isinstance(sub, CursorSubscription)
        start = sub.cursor
        topic.publish(b"after")
        message = sub.receive_message(WAIT)
        assert message is not None
        assert sub.cursor == message.cursor
    with topic.subscribe(start) as resumed:
        assert resumed.receive(WAIT) == b"after"
