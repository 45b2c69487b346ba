"""The sharded Pub/Sub backend on one server, and how it is built from URLs and settings.

The contract suite runs on it too (``sharded`` in ``conftest.BACKENDS``); the cluster
is covered in test_sharded_cluster.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.core import checks
from django.test import override_settings

from broadcast_app import BroadcastChannelError, PublishError
from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from broadcast_app.conf import create_channel
from localservers import LocalCluster, RedisServer, free_port

from .django_fixtures import SHARDED
from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory

AUTHORIZER = "tests.django_fixtures.allow_all"

single_node = pytest.mark.parametrize("backend", ["sharded"])


#: ``own_channels(channel)`` returns ``channel``, to be closed after the test.
OwnChannels = Callable[[ShardedRedisBroadcastChannel], ShardedRedisBroadcastChannel]


@pytest.fixture
def own_channels() -> Iterator[OwnChannels]:
    """``own_channels(channel)`` closes ``channel`` after the test."""
    with ExitStack() as stack:

        def own(channel: ShardedRedisBroadcastChannel) -> ShardedRedisBroadcastChannel:
            stack.callback(channel.close)
            return channel

        yield own


# -- on one server -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_uses_shard_channels_with_either_protocol(
    redis_server: RedisServer, protocol: int, own_channels: OwnChannels
) -> None:
    client = redis_server.client(protocol=protocol, decode_responses=True)
    channel = own_channels(ShardedRedisBroadcastChannel(client))
    try:
        topic = channel.topic(f"resp{protocol}:{time.monotonic_ns()}")
        with topic.subscribe() as sub:
            assert redis_server.shardnumsub(topic.name) == 1
            assert redis_server.numsub(topic.name) == 0
            # Plain PUBLISH does not reach shard channels; SPUBLISH from anyone does.
            assert client.publish(topic.name, "plain") == 0
            assert client.spublish(topic.name, "from redis-py") == 1
            topic.publish(b"\xff\x00 binary")
            assert sub.receive(WAIT) == b"from redis-py"
            assert sub.receive(WAIT) == b"\xff\x00 binary"
            assert sub.receive(0.05) is None
        assert wait_until(lambda: redis_server.shardnumsub(topic.name) == 0, WAIT)
    finally:
        channel.close()
        client.close()


@single_node
def test_prefix_names_the_shard_channel(
    channel_factory: ChannelFactory, redis_server: RedisServer
) -> None:
    channel = channel_factory(prefix="app:")
    name = channel_factory.topic_name()
    with channel.topic(name).subscribe() as sub:
        assert redis_server.shardnumsub(f"app:{name}") == 1
        assert redis_server.shardnumsub(name) == 0
        channel.topic(name).publish(b"prefixed")
        assert sub.receive(WAIT) == b"prefixed"


@single_node
def test_one_connection_and_one_thread_for_many_topics(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    # Counts connections: on a server of its own.
    server = restartable_redis
    channel = channel_factory(server=server)
    before = server.connected_clients()
    threads_before = threading.active_count()
    topics = [channel.topic(channel_factory.topic_name()) for _ in range(50)]
    with ExitStack() as stack:
        subs = [stack.enter_context(topic.subscribe()) for topic in topics for _ in range(4)]
        subscribers = [c for c in server.clients() if c.get("ssub", "0") != "0"]
        assert [int(c["ssub"]) for c in subscribers] == [50]
        assert server.connected_clients() - before == 1
        assert threading.active_count() - threads_before == 1
        for topic in topics:
            topic.publish(topic.name.encode())
        for index, sub in enumerate(subs):
            assert sub.receive(WAIT) == topics[index // 4].name.encode()


@single_node
def test_reconnects_and_resubscribes_every_topic(
    channel_factory: ChannelFactory,
    restartable_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = channel_factory(server=restartable_redis)
    topics = [channel.topic(channel_factory.topic_name()) for _ in range(600)]
    with ExitStack() as stack:
        subs = [stack.enter_context(topic.subscribe()) for topic in topics]
        restartable_redis.restart()
        assert wait_until(lambda: restartable_redis.shardnumsub(topics[-1].name) == 1, WAIT)
        for topic in topics:
            assert restartable_redis.shardnumsub(topic.name) == 1
            topic.publish(b"after the restart")
        for sub in subs:
            assert sub.receive(WAIT) == b"after the restart"
            assert sub.gaps == 1
    assert "Lost the Redis Pub/Sub connection" in caplog.text


def test_publishing_to_a_stopped_server_is_a_publish_error(
    restartable_redis: RedisServer, own_channels: OwnChannels
) -> None:
    channel = own_channels(ShardedRedisBroadcastChannel.from_url(restartable_redis.url))
    topic = channel.topic("stopped")
    restartable_redis.kill()
    started = time.monotonic()
    with pytest.raises(PublishError, match="stopped") as caught:
        topic.publish(b"nobody home")
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    # from_url()'s client defaults: two quick retries, no multi-second backoff.
    assert time.monotonic() - started < 2.0


# -- building channels -------------------------------------------------------------------------


def test_from_url_of_one_server(restartable_redis: RedisServer, own_channels: OwnChannels) -> None:
    # Counts connections: on a server of its own.
    server = restartable_redis
    before = server.connected_clients()
    channel = own_channels(ShardedRedisBroadcastChannel.from_url(server.url, prefix="p:"))
    assert not channel.is_cluster
    assert isinstance(channel.client, redis.Redis)
    assert channel.prefix == "p:"
    topic = channel.topic("from-url")
    with topic.subscribe() as sub:
        topic.publish(b"hello")
        assert sub.receive(WAIT) == b"hello"
    channel.close()
    # The channel owns the client it built, and closed it.
    assert wait_until(lambda: server.connected_clients() == before, WAIT)


@pytest.mark.parametrize(
    "location",
    [
        ["redis://127.0.0.1:1", "redis://127.0.0.1:2"],
        ("rediss://user:secret@127.0.0.1:1/0",),
    ],
)
def test_a_list_of_urls_is_a_cluster_built_on_first_use(
    location: Sequence[str], own_channels: OwnChannels
) -> None:
    # Nothing listens on these ports: construction must not connect.
    channel = own_channels(ShardedRedisBroadcastChannel.from_url(location))
    assert channel.is_cluster
    assert channel._client is None


def test_one_url_is_a_cluster_seed_with_cluster_true(own_channels: OwnChannels) -> None:
    channel = own_channels(
        ShardedRedisBroadcastChannel.from_url("redis://127.0.0.1:1", cluster=True)
    )
    assert channel.is_cluster


def test_an_unreachable_cluster_fails_publish_and_subscribe_clearly(
    own_channels: OwnChannels,
) -> None:
    port = free_port()  # Nothing listens there.
    channel = own_channels(
        ShardedRedisBroadcastChannel.from_url(
            [f"redis://127.0.0.1:{port}"], socket_connect_timeout=0.5, subscribe_timeout=1
        )
    )
    topic = channel.topic("nowhere")
    with pytest.raises(PublishError, match="nowhere"):
        topic.publish(b"lost")
    with pytest.raises(BroadcastChannelError, match="nowhere"):
        topic.subscribe().__enter__()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ([], {}, "non-empty list"),
        (["unix:///tmp/redis.sock"], {}, "redis:// or rediss://"),
        (["redis://127.0.0.1:1/1"], {}, "only database 0"),
        (["redis://127.0.0.1:1"], {"db": 2}, "only database 0"),
        (["redis://a:1@127.0.0.1:1", "redis://b:2@127.0.0.1:2"], {}, "differ only in host"),
        (["redis://127.0.0.1:99999"], {}, "port"),
        (["redis://127.0.0.1:1"], {"cluster": False}, "list of URLs means a Redis Cluster"),
        ("redis://127.0.0.1:1", {"cluster": "yes"}, "True or False"),
    ],
)
def test_from_url_rejects_bad_clusters(
    url: str | list[str], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ShardedRedisBroadcastChannel.from_url(url, **options)


@pytest.mark.parametrize("client", [None, "redis://x", object()])
def test_the_client_must_be_a_redis_client(client: Any) -> None:
    with pytest.raises(TypeError, match=r"redis\.Redis"):
        ShardedRedisBroadcastChannel(client)


# -- settings ----------------------------------------------------------------------------------


def check_ids(**settings: Any) -> list[str | None]:
    """The ids of the app's check messages under ``settings``, DEBUG and an authorizer."""
    with override_settings(DEBUG=True, BROADCAST_STREAM_AUTHORIZER=AUTHORIZER, **settings):
        return [message.id for message in checks.run_checks(tags=["broadcast_app"])]


@pytest.mark.parametrize(
    ("location", "options", "cluster"),
    [
        ("redis://127.0.0.1:1/0", {}, False),
        (["redis://127.0.0.1:1", "redis://127.0.0.1:2"], {"require_full_coverage": False}, True),
        ("redis://127.0.0.1:1", {"cluster": True, "reinitialize_steps": 1}, True),
    ],
)
def test_built_from_settings_without_io(
    location: object, options: dict[str, Any], cluster: bool
) -> None:
    # Nothing listens on these ports: neither building nor checking may connect.
    entry = {"BACKEND": SHARDED, "LOCATION": location, "OPTIONS": {"buffer_size": 8, **options}}
    with override_settings(BROADCAST_CHANNELS={"default": entry}):
        channel = create_channel("default")
        try:
            assert isinstance(channel, ShardedRedisBroadcastChannel)
            assert channel.is_cluster is cluster
            assert channel.buffer_size == 8
        finally:
            channel.close()
        assert check_ids(BROADCAST_CHANNELS={"default": entry}) == []


@pytest.mark.parametrize(
    ("location", "options", "check_id"),
    [
        (None, {}, "broadcast_app.E002"),
        ([], {}, "broadcast_app.E002"),
        ("redis://127.0.0.1:1", {"sokcet_timeout": 1}, "broadcast_app.E003"),
        # A cluster client option is unknown to a single server's client.
        ("redis://127.0.0.1:1", {"require_full_coverage": False}, "broadcast_app.E003"),
        (["redis://127.0.0.1:1"], {"db": 3}, "broadcast_app.E003"),
    ],
)
def test_bad_settings_are_reported_by_the_checks(
    location: object, options: dict[str, Any], check_id: str
) -> None:
    entry = {"BACKEND": SHARDED, "LOCATION": location, "OPTIONS": options}
    assert check_ids(BROADCAST_CHANNELS={"default": entry}) == [check_id]


def test_a_cluster_client_is_accepted_and_never_closed(
    redis_cluster: LocalCluster, own_channels: OwnChannels
) -> None:
    client = redis_cluster.client()
    try:
        channel = ShardedRedisBroadcastChannel(client, health_check_interval=2)
        assert channel.is_cluster
        assert channel.client is client
        assert channel.health_check_interval == 2.0
        channel.close()
        assert client.spublish("still usable", b"") == 0
    finally:
        client.close()
