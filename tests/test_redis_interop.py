"""Redis interoperability: bare channel names, opt-in prefix, RESP2/RESP3 and decoding clients.

Other programs (``redis-cli``, plain redis-py) publish to and subscribe from the same
Redis channels as the engine.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redis.client import PubSub

from broadcast_app.backends.redis import RedisBroadcastChannel
from localservers import RedisServer

from .channel_helpers import both_protocols
from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory

#: Every byte value, a NUL at each end and invalid UTF-8.
BINARY = b"\x00" + bytes(range(256)) + b"\xff\xfe\x00"


def redis_cli_publish(server: RedisServer, channel: str, payload: str) -> int:
    """Run ``redis-cli PUBLISH`` and return the number of receivers it reports."""
    executable = shutil.which("redis-cli")
    assert executable is not None, "redis-cli is missing (Debian package redis-tools)"
    done = subprocess.run(
        [executable, "-h", "127.0.0.1", "-p", str(server.port), "PUBLISH", channel, payload],
        capture_output=True,
        check=True,
        timeout=10,
    )
    return int(done.stdout.strip())


def next_message(listener: PubSub) -> tuple[bytes, bytes]:
    """Return ``(channel, data)`` of the next message a redis-py ``PubSub`` receives."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=WAIT)
        if message is not None and message["type"] == "message":
            return message["channel"], message["data"]
    raise AssertionError(f"no message within {WAIT} s")


@both_protocols
def test_the_redis_channel_is_the_bare_topic_name(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    channel = channel_factory(server=restartable_redis)
    publisher = restartable_redis.client()
    channel_factory.add_closer(publisher.close)
    name = channel_factory.topic_name("jobs")
    with channel.topic(name).subscribe() as sub:
        assert restartable_redis.numsub(name) == 1
        assert redis_cli_publish(restartable_redis, name, "from redis-cli") == 1
        assert sub.receive(WAIT) == b"from redis-cli"
        assert publisher.publish(name, BINARY) == 1
        assert sub.receive(WAIT) == BINARY


@both_protocols
def test_a_prefix_is_opt_in(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    channel = channel_factory(server=restartable_redis, prefix="app:")
    name = channel_factory.topic_name("jobs")
    prefixed = f"app:{name}"
    topic = channel.topic(name)
    with topic.subscribe() as sub:
        assert sub.topic == name
        assert restartable_redis.numsub(prefixed) == 1
        assert restartable_redis.numsub(name) == 0
        assert redis_cli_publish(restartable_redis, name, "unprefixed") == 0
        assert redis_cli_publish(restartable_redis, prefixed, "prefixed") == 1
        assert sub.receive(WAIT) == b"prefixed"

        listener = restartable_redis.client().pubsub()
        channel_factory.add_closer(listener.close)
        listener.subscribe(prefixed)
        assert wait_until(lambda: restartable_redis.numsub(prefixed) == 2, WAIT)
        topic.publish(b"to app:")
        assert sub.receive(WAIT) == b"to app:"
        assert next_message(listener) == (prefixed.encode(), b"to app:")
        listener.close()
    assert wait_until(lambda: restartable_redis.numsub(prefixed) == 0, WAIT)


@both_protocols
def test_a_plain_redis_subscriber_receives_what_the_channel_publishes(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    channel = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()
    client = restartable_redis.client()
    channel_factory.add_closer(client.close)
    listener = client.pubsub()
    channel_factory.add_closer(listener.close)
    listener.subscribe(name)
    assert wait_until(lambda: restartable_redis.numsub(name) == 1, WAIT)
    for payload in (b"first", b"", BINARY):
        channel.topic(name).publish(payload)
        assert next_message(listener) == (name.encode(), payload)
    listener.unsubscribe()  # type: ignore[no-untyped-call]
    listener.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_client_that_decodes_responses_still_delivers_bytes(
    restartable_redis: RedisServer, no_thread_leaks: None, protocol: int
) -> None:
    client = restartable_redis.client(protocol=protocol, decode_responses=True)
    channel = RedisBroadcastChannel(client)
    try:
        topic = channel.topic("decoded")
        with topic.subscribe() as sub:
            topic.publish(BINARY)
            assert sub.receive(WAIT) == BINARY
            assert client.publish("decoded", "text") == 1
            assert sub.receive(WAIT) == b"text"
    finally:
        channel.close()
        client.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_from_url_splits_channel_and_client_options(
    restartable_redis: RedisServer, no_thread_leaks: None, protocol: int
) -> None:
    channel = RedisBroadcastChannel.from_url(
        restartable_redis.url,
        prefix="app:",
        buffer_size=3,
        protocol=protocol,
        decode_responses=True,
    )
    try:
        assert (channel.prefix, channel.buffer_size) == ("app:", 3)
        kwargs = channel.client.connection_pool.connection_kwargs
        assert (kwargs["protocol"], kwargs["decode_responses"]) == (protocol, True)
        topic = channel.topic("options")
        with topic.subscribe() as sub:
            assert restartable_redis.numsub("app:options") == 1
            topic.publish(b"\xff")
            assert sub.receive(WAIT) == b"\xff"
    finally:
        channel.close()
    assert wait_until(lambda: restartable_redis.clients() == [], 2.0)


def test_a_unix_socket_url_works(tmp_path: Path, no_thread_leaks: None) -> None:
    # from_url()'s client defaults must suit every URL scheme it accepts.
    socket_path = tmp_path / "redis.sock"
    with RedisServer("--unixsocket", str(socket_path), "--unixsocketperm", "700") as server:
        channel = RedisBroadcastChannel.from_url(f"unix://{socket_path}", subscribe_timeout=3)
        try:
            topic = channel.topic("over a unix socket")
            with topic.subscribe() as sub:
                assert server.numsub("over a unix socket") == 1
                topic.publish(b"local")
                assert sub.receive(WAIT) == b"local"
        finally:
            channel.close()
        assert wait_until(lambda: server.clients() == [], 2.0)
