"""The Redis Streams backend beyond the contract: expiry, trimming, the shared reader.

Recovery is covered in test_streams_recovery.py, replay from a cursor in
test_streams_replay.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
import redis

from broadcast_app import BroadcastChannelError, PublishError
from broadcast_app.backends.streams import StreamsBroadcastChannel
from localservers import RedisServer

from .channel_helpers import reader_blocked, reader_connections, subscribe_and_deliver
from .waiting import PROMPTLY, WAIT, holds_for, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task


@pytest.fixture(params=["streams", "streams-resp2"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the Streams backend, over RESP3 and RESP2."""
    name: str = request.param
    return name


def admin(server: RedisServer) -> redis.Redis:
    return server._admin_client()


# -- publishing -------------------------------------------------------------------------------


def test_every_publish_leaves_the_stream_with_a_ttl(
    channel_factory: ChannelFactory, redis_server: RedisServer
) -> None:
    channel = channel_factory(retention_seconds=30)
    names = [channel_factory.topic_name() for _ in range(3)]
    for name in names:
        channel.topic(name).publish(b"sync")
        asyncio.run(channel.topic(name).apublish(b"async"))
    for name in names:
        assert admin(redis_server).xlen(name) == 2
        assert 25_000 < admin(redis_server).pttl(name) <= 30_000


def test_publish_refreshes_the_expiry(
    channel_factory: ChannelFactory, redis_server: RedisServer
) -> None:
    channel = channel_factory(retention_seconds=2)
    topic = channel.topic(channel_factory.topic_name())
    topic.publish(b"first")
    admin(redis_server).pexpire(topic.name, 100)
    topic.publish(b"second")
    assert admin(redis_server).pttl(topic.name) > 1500


def test_fractional_retention_is_kept_to_the_millisecond(
    channel_factory: ChannelFactory, redis_server: RedisServer
) -> None:
    channel = channel_factory(retention_seconds=1.5)
    topic = channel.topic(channel_factory.topic_name())
    topic.publish(b"x")
    assert 1000 < admin(redis_server).pttl(topic.name) <= 1500


@pytest.mark.parametrize("maxlen", [None, 100])
def test_maxlen_trims_each_stream_approximately(
    channel_factory: ChannelFactory, redis_server: RedisServer, maxlen: int
) -> None:
    channel = channel_factory(maxlen=maxlen)
    topic = channel.topic(channel_factory.topic_name())
    for number in range(1000):
        topic.publish(b"%d" % number)
    length = admin(redis_server).xlen(topic.name)
    if maxlen is None:
        assert length == 1000
    else:
        # MAXLEN ~ removes whole nodes of up to 100 entries only.
        assert maxlen <= length < maxlen + 101
        last = admin(redis_server).xrevrange(topic.name, count=1)
        assert last is not None
        assert last[0][1] == {"data": "999"}


def test_prefix_names_the_stream_key(
    channel_factory: ChannelFactory, redis_server: RedisServer
) -> None:
    channel = channel_factory(prefix="app:")
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        topic.publish(b"prefixed")
        assert sub.receive(WAIT) == b"prefixed"
    assert admin(redis_server).xlen("app:" + topic.name) == 1
    assert admin(redis_server).exists(topic.name) == 0


def test_publish_to_an_unreachable_redis_raises_publish_error(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    # from_url's client fails within about a second.
    channel = StreamsBroadcastChannel.from_url(restartable_redis.url)
    channel_factory.add_closer(channel.close)
    topic = channel.topic(channel_factory.topic_name())
    topic.publish(b"accepted")
    restartable_redis.kill()
    started = time.monotonic()
    with pytest.raises(PublishError) as raised:
        topic.publish(b"lost")
    assert isinstance(raised.value.__cause__, redis.RedisError)
    assert time.monotonic() - started < 3.0


def test_publish_to_a_key_that_is_not_a_stream_raises_publish_error(
    channel: Any, redis_server: RedisServer
) -> None:
    name = f"string:{time.monotonic_ns()}"
    admin(redis_server).set(name, "not a stream", ex=60)
    with pytest.raises(PublishError, match="WRONGTYPE"):
        channel.topic(name).publish(b"x")


# -- receiving --------------------------------------------------------------------------------


def test_entries_written_by_other_clients_are_delivered(
    channel: Any, topic_name: str, redis_server: RedisServer
) -> None:
    with channel.topic(topic_name).subscribe() as sub:
        admin(redis_server).xadd(topic_name, {"data": "plain"})
        admin(redis_server).xadd(topic_name, {"kind": "note", "data": "data wins"})
        admin(redis_server).xadd(topic_name, {"message": "first value"})
        got = [sub.receive(WAIT) for _ in range(3)]
    assert got == [b"plain", b"data wins", b"first value"]


def test_a_key_that_is_not_a_stream_fails_its_subscription_only(
    channel_factory: ChannelFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = channel_factory(subscribe_timeout=0.5)
    bad = channel_factory.topic_name("string")
    admin(redis_server).set(bad, "not a stream", ex=60)
    good = channel.topic(channel_factory.topic_name())
    with good.subscribe() as sub:
        with pytest.raises(BroadcastChannelError, match="did not confirm"):
            channel.topic(bad).subscribe().__enter__()
        good.publish(b"unaffected")
        assert sub.receive(WAIT) == b"unaffected"
    assert any("not a stream" in record.getMessage() for record in caplog.records)


def test_a_key_replaced_by_another_type_stops_only_its_topic(
    channel: Any, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"replaced:{time.monotonic_ns()}", f"kept:{time.monotonic_ns()}"]
    with ExitStack() as stack:
        replaced, kept = (stack.enter_context(channel.topic(n).subscribe()) for n in names)
        channel.topic(names[0]).publish(b"before")
        assert replaced.receive(WAIT) == b"before"
        admin(redis_server).delete(names[0])
        admin(redis_server).set(names[0], "now a string", ex=60)
        channel.topic(names[1]).publish(b"still read")
        assert kept.receive(WAIT) == b"still read"
        assert wait_until(lambda: "not a stream" in caplog.text, WAIT)
        channel.topic(names[1]).publish(b"read after")
        assert kept.receive(WAIT) == b"read after"


def test_a_client_that_decodes_responses_still_carries_bytes(
    channel_factory: ChannelFactory, redis_server: RedisServer
) -> None:
    client = redis_server.client(decode_responses=True)
    channel_factory.add_closer(client.close)
    channel = StreamsBroadcastChannel(client)
    channel_factory.add_closer(channel.close)
    topic = channel.topic(channel_factory.topic_name())
    payload = bytes(range(256))
    with topic.subscribe() as live:
        topic.publish(payload)
        message = live.receive_with_cursor(WAIT)
        assert message is not None
        assert message.payload == payload
    with topic.subscribe(cursor="0-0") as replay:
        assert replay.receive(WAIT) == payload


# -- one reader for everything ----------------------------------------------------------------


# These tests count the readers and reads of a server of their own.


def test_one_reader_connection_and_thread_for_1000_subscriptions(
    channel_factory: ChannelFactory, restartable_redis: RedisServer, background: type[Task]
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    names = [channel_factory.topic_name() for _ in range(100)]
    threads_before = threading.active_count()
    connections_before = server.connected_clients()
    with ExitStack() as stack:
        subscribe_and_deliver(stack, channel, names, 1000)
        assert threading.active_count() - threads_before <= 1
        assert len(reader_connections(server)) == 1
        # The reader, and one pooled connection for publishing and CLIENT UNBLOCK.
        assert server.connected_clients() - connections_before <= 2


def test_new_and_left_topics_interrupt_the_blocked_read(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    """The read blocks for the health-check interval; topic changes must not wait for it."""
    server = restartable_redis
    channel = channel_factory(server=server, health_check_interval=60)
    first = channel.topic(channel_factory.topic_name())
    with first.subscribe():
        assert wait_until(lambda: reader_connections(server), WAIT)
        for _ in range(5):
            other = channel.topic(channel_factory.topic_name())
            started = time.monotonic()
            with other.subscribe() as sub:
                assert time.monotonic() - started < PROMPTLY
                other.publish(b"read at once")
                assert sub.receive(PROMPTLY) == b"read at once"
                assert wait_until(lambda: reader_blocked(server), WAIT)  # Reading again.
                reads = server.command_calls("xread")
            # Leaving re-issues the read without the topic, well before the block ends.
            assert wait_until(lambda: server.command_calls("xread") > reads, PROMPTLY)


def test_closing_the_channel_is_prompt_while_the_reader_blocks(
    channel_factory: ChannelFactory, restartable_redis: RedisServer, background: type[Task]
) -> None:
    channel = channel_factory(server=restartable_redis, health_check_interval=60)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        consumer = background(list, sub)
        assert wait_until(lambda: reader_blocked(restartable_redis), WAIT)
        started = time.monotonic()
        channel.close()
        assert time.monotonic() - started < PROMPTLY
        assert consumer.result(PROMPTLY) == []


def test_idle_subscriptions_cost_no_reads(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server, health_check_interval=60)
    with ExitStack() as stack:
        for _ in range(100):
            stack.enter_context(channel.topic(channel_factory.topic_name()).subscribe())
        assert wait_until(lambda: reader_blocked(server), WAIT)
        reads = server.command_calls("xread")
        assert holds_for(lambda: server.command_calls("xread") == reads, 0.5)


# -- configuration ----------------------------------------------------------------------------


def test_from_url_sorts_channel_and_client_options(redis_server: RedisServer) -> None:
    channel = StreamsBroadcastChannel.from_url(
        redis_server.url, retention_seconds=5, maxlen=50, prefix="p:", socket_timeout=3
    )
    try:
        assert (channel.retention_seconds, channel.maxlen, channel.prefix) == (5.0, 50, "p:")
        assert channel.client.connection_pool.connection_kwargs["socket_timeout"] == 3
        topic = channel.topic(f"url:{time.monotonic_ns()}")
        with topic.subscribe() as sub:
            topic.publish(b"through from_url")
            assert sub.receive(WAIT) == b"through from_url"
    finally:
        channel.close()


@pytest.mark.parametrize(
    "options",
    [{"retention_seconds": 0}, {"retention_seconds": -1}, {"maxlen": 0}, {"maxlen": 1.5}],
)
def test_bad_options_are_rejected(redis_server: RedisServer, options: dict[str, Any]) -> None:
    client = redis_server.client()
    try:
        with pytest.raises(ValueError, match=next(iter(options))):
            StreamsBroadcastChannel(client, **options)
    finally:
        client.close()
