"""Each message is framed once per process and shared by every stream that sends it."""

from __future__ import annotations

import gc
from typing import Any

from broadcast_app import sse
from broadcast_app.backends.memory import InMemoryBroadcastChannel
from broadcast_app.channel import Message, Subscription


def test_every_subscription_gets_one_frame_object_per_message(monkeypatch: Any) -> None:
    framed: list[Message] = []
    frame = sse._frame_message

    def counted(message: Message) -> bytes:
        framed.append(message)
        return frame(message)

    monkeypatch.setattr(sse, "_frame_message", counted)
    with InMemoryBroadcastChannel() as channel:
        topic = channel.topic("frames")
        subscriptions = [topic.subscribe() for _ in range(50)]
        for subscription in subscriptions:
            subscription.__enter__()
        topic.publish(b"one")
        topic.publish(b"two")
        frames = [[sse.message_event(received(s)) for s in subscriptions] for _ in range(2)]
    assert [len({id(f) for f in row}) for row in frames] == [1, 1]
    assert frames[0][0] == sse.payload_event(b"one")
    assert [m.payload for m in framed] == [b"one", b"two"]


def received(subscription: Subscription) -> Message:
    message = subscription.receive_message(1.0)
    assert message is not None
    return message


def test_a_frame_goes_with_its_message() -> None:
    message = Message(b"short-lived")
    sse.message_event(message)
    sse.message_event(Message(b"another"))  # Replaces the one-entry cache.
    assert message in sse._frames
    del message
    gc.collect()
    assert all(m.payload != b"short-lived" for m in sse._frames)
