"""Named events: the wire encoding on every backend, SSE framing, and ``send_event``."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid
from typing import Any

import pytest

from broadcast_app import Message, asend_event, get_channel, send_event, sse
from broadcast_app.backends._envelope import EVENT_MARKER

from .django_fixtures import Event, parse_events
from .waiting import WAIT

RAW_LOOKALIKES = [
    EVENT_MARKER + b"progress\n{}",
    EVENT_MARKER + b"\npayload",
    EVENT_MARKER,
    b'{"event": "progress", "data": {"percent": 10}}',
    b"\x00",
]


def test_an_event_reaches_subscribers_with_its_name(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        topic.publish(b'{"percent":10}', event="progress")
        topic.publish(b"plain")
        first, second = sub.receive_message(WAIT), sub.receive_message(WAIT)
    assert first is not None
    assert second is not None
    assert (first.payload, first.event) == (b'{"percent":10}', "progress")
    assert (second.payload, second.event) == (b"plain", None)


@pytest.mark.parametrize("payload", RAW_LOOKALIKES)
def test_a_raw_payload_arrives_byte_exact_whatever_it_looks_like(
    channel: Any, topic_name: str, payload: bytes
) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        topic.publish(payload)
        message = sub.receive_message(WAIT)
    assert message is not None
    assert (message.payload, message.event) == (payload, None)


@pytest.mark.parametrize("backend", ["streams", "streams-resp2"])
def test_events_survive_replay(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    topic.publish(b"[1]", event="step")
    topic.publish(EVENT_MARKER + b"raw")
    with topic.subscribe("0-0") as sub:
        replayed = [sub.receive_message(WAIT), sub.receive_message(WAIT)]
    assert [(m.payload, m.event) for m in replayed if m] == [
        (b"[1]", "step"),
        (EVENT_MARKER + b"raw", None),
    ]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (1, TypeError),
        ("", ValueError),
        ("two words", ValueError),
        ("line\nbreak", ValueError),
        ("csi\x9b", ValueError),
        ("x" * 129, ValueError),
        ("message", ValueError),
        ("gap", ValueError),
        ("binary", ValueError),
    ],
)
def test_unusable_event_names_are_refused_before_sending(
    channel: Any, topic_name: str, name: object, error: type[Exception]
) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        with pytest.raises(error, match="event name"):
            topic.publish(b"{}", event=name)
        topic.publish(b"after")
        assert sub.receive(WAIT) == b"after"


def test_event_data_must_be_utf8(channel: Any, topic_name: str) -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        channel.topic(topic_name).publish(b"\xff", event="progress")


# -- SSE framing -------------------------------------------------------------------------


def test_a_named_event_is_framed_under_its_name_with_its_cursor() -> None:
    framed = sse.message_event(Message(b'{"a":\n1}', "5-0", "progress"))
    assert parse_events(framed) == [Event('{"a":\n1}', "progress")]
    assert b"\nid: 5-0\n" in framed


def test_a_plain_message_is_framed_as_before() -> None:
    assert sse.message_event(Message(b"hi", "5-0")) == sse.payload_event(b"hi", "5-0")


# -- send_event --------------------------------------------------------------------------

MEMORY = {"BACKEND": "broadcast_app.backends.memory.InMemoryBroadcastChannel"}


@pytest.fixture
def memory_channel(settings: Any) -> Any:
    settings.BROADCAST_CHANNELS = {"default": MEMORY, "other": MEMORY}
    return get_channel


def test_send_event_encodes_with_djangos_json_encoder(memory_channel: Any) -> None:
    data = {
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "amount": decimal.Decimal("1.50"),
        "id": uuid.UUID(int=1),
    }
    with memory_channel("other").topic("jobs").subscribe() as sub:
        send_event("jobs", data, event="progress", channel="other")
        send_event("jobs", [1, "two"])  # The default channel: not this subscription's.
        assert sub.receive_message(0) == Message(
            b'{"when":"2026-01-02T03:04:05Z","amount":"1.50",'
            b'"id":"00000000-0000-0000-0000-000000000001"}',
            None,
            "progress",
        )
        assert sub.receive_message(0) is None


def test_send_event_without_a_name_is_a_plain_json_message(memory_channel: Any) -> None:
    with memory_channel().topic("jobs").subscribe() as sub:
        send_event("jobs", [1, "two"])
        assert sub.receive_message(0) == Message(b'[1,"two"]')


def test_asend_event_is_the_async_twin(memory_channel: Any) -> None:
    async def main() -> Message | None:
        async with memory_channel().topic("jobs").subscribe() as sub:
            await asend_event("jobs", {"done": True}, event="finished")
            message: Message | None = await sub.areceive_message(1)
            return message

    assert asyncio.run(main()) == Message(b'{"done":true}', None, "finished")


@pytest.mark.parametrize("data", [object(), float("nan"), {1j: 1}])
def test_send_event_refuses_what_json_cannot_carry(memory_channel: Any, data: object) -> None:
    with memory_channel().topic("jobs").subscribe() as sub:
        with pytest.raises((TypeError, ValueError)):
            send_event("jobs", data, event="progress")
        assert sub.receive(0) is None
