"""The start cursor of a Streams subscription: where a consumer that saw nothing resumes."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app import ORIGIN, BroadcastChannelError
from broadcast_app.backends.cursors import parse_cursor

from .waiting import WAIT

if TYPE_CHECKING:
    pass


@pytest.fixture(params=["streams", "streams-resp2"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_the_start_cursor_of_a_missing_stream_is_the_origin(channel: Any, topic_name: str) -> None:
    with channel.topic(topic_name).subscribe() as sub:
        assert sub.cursor == ORIGIN


def test_the_start_cursor_is_unknown_before_the_subscription_starts(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    with pytest.raises(BroadcastChannelError, match="before it starts"):
        _ = topic.subscribe().cursor
    assert topic.subscribe(cursor="5-1").cursor == "5-1"


def test_a_subscription_joining_a_listened_topic_starts_where_the_topic_is_now(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as first:
        for number in range(3):
            topic.publish(b"%d" % number)
        received = [first.receive_message(WAIT) for _ in range(3)]
        last = received[-1]
        assert last is not None
        with topic.subscribe() as joined:
            assert joined.cursor == last.cursor
        # Resuming from it replays nothing that the joined subscription had not seen.
        with topic.subscribe(cursor=last.cursor) as resumed:
            topic.publish(b"next")
            assert resumed.receive(WAIT) == b"next"
            assert first.receive(WAIT) == b"next"


def test_subscriptions_joining_during_traffic_receive_only_what_follows_their_start(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    stop = threading.Event()

    def publish() -> None:
        number = 0
        while not stop.is_set():
            topic.publish(b"%d" % number)
            number += 1

    publisher = threading.Thread(target=publish, daemon=True)
    with ExitStack() as stack:
        stack.enter_context(topic.subscribe())  # Keeps the topic listened throughout.
        publisher.start()
        try:
            for _ in range(30):
                with topic.subscribe() as sub:
                    start = sub.cursor
                    message = sub.receive_message(WAIT)
                    assert message is not None
                    assert message.cursor is not None
                    assert parse_cursor(message.cursor) > parse_cursor(start)
                    # What the start cursor replays begins at or before that message.
                    with topic.subscribe(cursor=start) as replay:
                        first = replay.receive_message(WAIT)
                    assert first is not None
                    assert first.cursor is not None
                    assert parse_cursor(first.cursor) <= parse_cursor(message.cursor)
        finally:
            stop.set()
            publisher.join(WAIT)
