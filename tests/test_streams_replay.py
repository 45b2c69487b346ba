"""Subscribing from a cursor on the Redis Streams backend: replay, then live, with no seam."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app import (
    BroadcastChannelError,
    CursorSubscription,
    CursorTopic,
    Message,
    SubscriptionClosedError,
)
from broadcast_app.backends import _stream_replay
from broadcast_app.backends.cursors import parse_cursor
from broadcast_app.backends.streams import REPLAY_PAGE, StreamsBroadcastChannel
from broadcast_app.backends.subscription import ChannelSubscription
from localservers import RedisServer

from .channel_helpers import numbered
from .waiting import PROMPTLY, WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task

MAX = 2**64 - 1


@pytest.fixture(params=["streams", "streams-resp2"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the Streams backend, over RESP3 and RESP2."""
    name: str = request.param
    return name


def receive_until_quiet(sub: Any, quiet: float = 0.5) -> list[Message]:
    got = []
    while (message := sub.receive_with_cursor(quiet)) is not None:
        got.append(message)
    return got


def assert_strictly_increasing(messages: list[Message]) -> None:
    positions = [parse_cursor(message.cursor) for message in messages]
    assert all(a < b for a, b in itertools.pairwise(positions)), positions


# -- replay, then live ------------------------------------------------------------------------


def test_replay_from_the_origin_then_live(
    channel: Any, topic_name: str, redis_server: RedisServer
) -> None:
    topic = channel.topic(topic_name)
    for payload in numbered(50):
        topic.publish(payload)
    with topic.subscribe(cursor="0-0") as sub:
        replayed = [sub.receive_with_cursor(WAIT) for _ in range(50)]
        topic.publish(b"live")
        live = sub.receive_with_cursor(WAIT)
        assert sub.receive_with_cursor(0.1) is None
        assert (sub.gaps, sub.dropped) == (0, 0)
    messages = [*replayed, live]
    assert [m.payload for m in messages] == [*numbered(50), b"live"]
    assert [m.cursor for m in messages] == redis_server.stream_ids(topic_name)


def test_replay_from_a_mid_cursor_then_live(
    channel: Any, topic_name: str, redis_server: RedisServer
) -> None:
    topic = channel.topic(topic_name)
    for payload in numbered(100):
        topic.publish(payload)
    cursor = redis_server.stream_ids(topic_name)[39]
    with topic.subscribe(cursor=cursor) as sub:
        topic.publish(b"live")
        got = receive_until_quiet(sub)
        assert sub.gaps == 0
    assert [m.payload for m in got] == [*numbered(60, 40), b"live"]
    assert [m.cursor for m in got] == redis_server.stream_ids(topic_name, cursor)


def test_a_consumer_resuming_from_its_cursor_misses_nothing(channel: Any, topic_name: str) -> None:
    """The at-least-once story: remember the last cursor, subscribe again from it later."""
    topic = channel.topic(topic_name)
    with topic.subscribe() as first:
        topic.publish(b"seen")
        last = first.receive_with_cursor(WAIT)
    assert last is not None
    for payload in numbered(20):
        topic.publish(payload)  # Nobody listens.
    with topic.subscribe(cursor=last.cursor) as resumed:
        topic.publish(b"live")
        assert [m.payload for m in receive_until_quiet(resumed)] == [*numbered(20), b"live"]
        assert resumed.gaps == 0


@pytest.mark.parametrize("buffer_size", [16, 4096], ids=["held-back-messages-dropped", "kept"])
def test_concurrent_publishers_during_a_long_replay_leave_no_seam(
    channel_factory: ChannelFactory,
    redis_server: RedisServer,
    background: type[Task],
    buffer_size: int,
) -> None:
    channel = channel_factory(buffer_size=buffer_size)
    topic = channel.topic(channel_factory.topic_name())
    pipe = redis_server._admin_client().pipeline(transaction=False)
    for number in range(4 * REPLAY_PAGE + 17):
        pipe.xadd(topic.name, {"data": f"backlog {number}"})
    pipe.execute()
    cursor = redis_server.stream_ids(topic.name)[100]
    done = threading.Event()

    def publish(publisher: int) -> int:
        number = 0
        while not done.is_set():
            topic.publish(f"{publisher}:{number}".encode())
            number += 1
        return number

    with topic.subscribe() as already_listening, topic.subscribe(cursor=cursor) as sub:
        publishers = [background(publish, publisher) for publisher in range(3)]
        got: list[Message] = []
        try:
            while len(got) < 3 * REPLAY_PAGE:
                message = sub.receive_with_cursor(WAIT)
                assert message is not None
                got.append(message)
                if len(got) % 64 == 0:
                    time.sleep(0.005)  # A consumer slower than the publishers.
        finally:
            done.set()
            published = sum(task.result() for task in publishers)
        got += receive_until_quiet(sub)
        assert (sub.gaps, sub.dropped) == (0, 0)
        if buffer_size == 16:
            # The scenario this test is for: live messages overflowed while held back.
            assert sub._holding_inbox.held_drops > 0
        assert already_listening.receive(0) is not None
    assert published > 0
    assert_strictly_increasing(got)
    assert [m.cursor for m in got] == redis_server.stream_ids(topic.name, cursor)


def test_live_messages_dropped_while_the_replay_catches_up_are_read_from_redis(
    channel_factory: ChannelFactory, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forces the race the hand-over must survive: right after the replay's last read,
    more messages arrive than the held-back buffer keeps."""
    channel = channel_factory(buffer_size=2)
    topic = channel.topic(channel_factory.topic_name())
    for payload in numbered(10):
        topic.publish(payload)
    read = _stream_replay.StreamHistory.read
    injected = threading.Event()

    def read_then_publish(history: Any) -> Any:
        page = read(history)
        if not injected.is_set():
            injected.set()
            before = sub._holding_inbox.held_drops
            for payload in numbered(5, 100):
                topic.publish(payload)
            assert wait_until(lambda: sub._holding_inbox.held_drops == before + 3, WAIT)
        return page

    monkeypatch.setattr(_stream_replay.StreamHistory, "read", read_then_publish)
    with topic.subscribe(cursor="0-0") as sub:
        got = receive_until_quiet(sub, 0.3)
        assert (sub.gaps, sub.dropped) == (0, 0)
    assert injected.is_set()
    assert [m.payload for m in got] == [*numbered(10), *numbered(5, 100)]
    assert [m.cursor for m in got] == redis_server.stream_ids(topic.name)


def test_live_messages_the_replay_got_first_are_not_repeated(
    channel: Any, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader thread may deliver entries after the replay read them from Redis."""
    topic = channel.topic(topic_name)
    for payload in numbered(5):
        topic.publish(payload)
    with topic.subscribe(cursor="0-0") as sub:
        hub = channel.hub
        dispatch_many, gate, held = hub.dispatch_many, threading.Event(), threading.Event()

        def lagging_dispatch(messages: Iterable[tuple[str, Message]]) -> None:
            messages = list(messages)
            held.set()
            gate.wait(WAIT)
            dispatch_many(messages)

        monkeypatch.setattr(hub, "dispatch_many", lagging_dispatch)
        for payload in numbered(3, 5):
            topic.publish(payload)
        assert held.wait(WAIT)  # The reader has read them, and waits.
        replayed = [sub.receive(WAIT) for _ in range(8)]
        gate.set()
        monkeypatch.setattr(hub, "dispatch_many", dispatch_many)
        topic.publish(b"live")
        rest = [m.payload for m in receive_until_quiet(sub, 0.3)]
    assert replayed == numbered(8)
    assert rest == [b"live"]


def test_replay_through_iteration_and_plain_receive(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    for payload in numbered(10):
        topic.publish(payload)
    sub = topic.as_subscriber().subscribe(cursor="0-0")
    try:
        assert sub.receive(WAIT) == b"0"
        message = sub.receive_with_cursor(WAIT)
        assert message is not None
        assert message.payload == b"1"
        messages = iter(sub)
        assert [next(messages) for _ in range(8)] == numbered(8, 2)
        topic.publish(b"live")
        assert next(messages) == b"live"
    finally:
        sub.close()


def test_async_replay_then_live(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    for payload in numbered(REPLAY_PAGE + 5):
        topic.publish(payload)

    async def main() -> tuple[list[Message | None], list[bytes]]:
        async with topic.subscribe(cursor="0-0") as sub:
            first = [await sub.areceive_with_cursor(WAIT) for _ in range(REPLAY_PAGE)]
            await topic.apublish(b"live")
            rest: list[bytes] = []
            async for payload in sub:
                rest.append(payload)
                if payload == b"live":
                    break
            return first, rest

    first, rest = asyncio.run(asyncio.wait_for(main(), 30))
    assert [m.payload for m in first if m is not None] == numbered(REPLAY_PAGE)
    assert rest == [*numbered(5, REPLAY_PAGE), b"live"]


def test_cursor_at_the_end_replays_nothing(
    channel: Any, topic_name: str, redis_server: RedisServer
) -> None:
    topic = channel.topic(topic_name)
    topic.publish(b"old")
    (last,) = redis_server.stream_ids(topic_name)
    with topic.subscribe(cursor=last) as sub:
        assert sub.receive(0.1) is None
        topic.publish(b"new")
        assert sub.receive(WAIT) == b"new"


def test_messages_up_to_a_cursor_ahead_of_the_stream_are_skipped(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe(cursor=f"{MAX}-{MAX}") as sub:
        topic.publish(b"before the cursor")
        assert sub.receive(0.3) is None


# -- gaps -------------------------------------------------------------------------------------


def test_a_cursor_older_than_the_retained_history_is_a_gap(
    channel_factory: ChannelFactory, redis_server: RedisServer
) -> None:
    channel = channel_factory(maxlen=10)
    topic = channel.topic(channel_factory.topic_name())
    topic.publish(b"first")
    (cursor,) = redis_server.stream_ids(topic.name)
    for payload in numbered(300):
        topic.publish(payload)
    with topic.subscribe(cursor=cursor) as sub:
        got = [m.payload for m in receive_until_quiet(sub, 0.2)]
        assert sub.gaps == 1
    assert 10 <= len(got) < 300
    assert got == numbered(len(got), 300 - len(got))


def test_a_cursor_on_a_missing_stream_is_a_gap_unless_it_is_the_origin(
    channel: Any, topic_name: str
) -> None:
    topic = channel.topic(topic_name)
    with (
        topic.subscribe(cursor="1700000000000-0") as expired,
        topic.subscribe(cursor="0-0") as origin,
    ):
        assert expired.receive(0.1) is None
        assert origin.receive(0.1) is None
        assert (expired.gaps, origin.gaps) == (1, 0)
        topic.publish(b"live")
        assert expired.receive(WAIT) == origin.receive(WAIT) == b"live"


# -- the cursor API ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "", "0", "-0", "0-", "1-2-3", " 1-0", "1-0 ", "+1-0", "-1-0", "1.5-0", "a-b", "0x1-0",
        "1_0-0", "\n1-0", "1-0\n", "\uff11-0", "\u0661-0", "1\u20130",
        f"{MAX + 1}-0", f"0-{MAX + 1}", "1" * 21 + "-0", "1-0" * 10_000,
    ],
)  # fmt: skip
def test_malformed_cursors_are_value_errors_before_any_io(
    channel: Any, topic_name: str, bad: object
) -> None:
    with pytest.raises(ValueError, match="cursor") as raised:
        channel.topic(topic_name).subscribe(cursor=bad)
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize("bad", [b"1-0", 1, 1.0, ["1-0"]])
def test_cursors_must_be_str(channel: Any, topic_name: str, bad: object) -> None:
    with pytest.raises(TypeError, match="cursor"):
        channel.topic(topic_name).subscribe(cursor=bad)


@pytest.mark.parametrize("good", ["0-0", "0-1", "0001-0002", f"{MAX}-{MAX}", f"{MAX}-0"])
def test_extreme_cursors_are_accepted(channel: Any, topic_name: str, good: str) -> None:
    with channel.topic(topic_name).subscribe(cursor=good) as sub:
        assert sub.receive_with_cursor(0) is None


def test_stream_message_is_a_small_frozen_value(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    with topic.subscribe() as sub:
        topic.publish(bytearray(b"payload"))
        message: Message | None = sub.receive_with_cursor(WAIT)
    assert message is not None
    assert type(message.payload) is bytes
    assert type(message.cursor) is str
    parse_cursor(message.cursor)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.payload = b"changed"  # type: ignore[misc]
    assert message == Message(b"payload", message.cursor)
    assert hash(message) == hash(Message(b"payload", message.cursor))


def test_the_types_tell_cursor_capable_topics_apart(channel: Any, topic_name: str) -> None:
    topic = channel.topic(topic_name)
    assert isinstance(topic, CursorTopic)
    sub = topic.subscribe(cursor="0-0")
    assert isinstance(sub, CursorSubscription)
    assert isinstance(sub, ChannelSubscription)
    sub.close()


@pytest.mark.parametrize("timeout", [0.05, 0.3])
def test_receive_with_cursor_returns_none_after_the_timeout(
    channel: Any, topic_name: str, timeout: float
) -> None:
    async def areceive(sub: Any) -> Message | None:
        return await sub.areceive_with_cursor(timeout)  # type: ignore[no-any-return]

    with channel.topic(topic_name).subscribe(cursor="0-0") as sub:
        for receive in (sub.receive_with_cursor, lambda t: asyncio.run(areceive(sub))):
            started = time.monotonic()
            assert receive(timeout) is None
            assert timeout * 0.9 <= time.monotonic() - started < timeout + PROMPTLY


# -- closing and failures ---------------------------------------------------------------------


def test_close_during_a_replay_is_prompt(
    channel: Any, topic_name: str, redis_server: RedisServer, background: type[Task]
) -> None:
    pipe = redis_server._admin_client().pipeline(transaction=False)
    for number in range(20 * REPLAY_PAGE):
        pipe.xadd(topic_name, {"data": number})
    pipe.execute()
    sub = channel.topic(topic_name).subscribe(cursor="0-0")
    received: list[bytes | None] = []

    def consume() -> float:
        try:
            while True:
                received.append(sub.receive(None))
        except SubscriptionClosedError:
            return time.monotonic()

    consumer = background(consume)
    # The replay is under way: a first page arrived, many more are to come.
    assert wait_until(lambda: received, WAIT)
    closed_at = time.monotonic()
    sub.close()
    assert consumer.result() - closed_at < PROMPTLY
    with pytest.raises(SubscriptionClosedError):
        sub.receive_with_cursor(0)
    assert list(sub) == []


def test_a_replay_that_cannot_read_raises_and_can_be_resumed(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    channel = StreamsBroadcastChannel.from_url(restartable_redis.url)
    channel_factory.add_closer(channel.close)
    channel_factory.redis_server(restartable_redis)
    topic = channel.topic(channel_factory.topic_name())
    topic.publish(b"retained, then lost with the server")
    with topic.subscribe(cursor="0-0") as sub:
        restartable_redis.kill()
        with pytest.raises(BroadcastChannelError, match="replay"):
            sub.receive(WAIT)
        restartable_redis.restart()
        assert sub.receive(0.1) is None
        topic.publish(b"after the restart")
        assert sub.receive(WAIT) == b"after the restart"
