"""Sharded Pub/Sub on a Redis Cluster: routing by slot, accounting, failover, slot moves.

This module runs its own cluster (``redis_cluster`` below overrides the session's), which
its tests fail over, kill and reshard; each test leaves it healthy, whatever its shape.
The contract suite runs on the session's cluster (``sharded-cluster`` in conftest).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError
from redis.retry import Retry

from broadcast_app import PublishError
from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from localservers import ClusterNodeServer, LocalCluster

from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory, Task

#: How soon live subscriptions on a failed-over shard must receive again, in seconds.
FAILOVER_RECOVERY = 15.0

#: For tests that use ``channel_factory``: channels on this module's cluster.
on_cluster = pytest.mark.parametrize("backend", ["sharded-cluster"])


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[LocalCluster]:
    """This module's own cluster: tests may kill, fail over and reshard it."""
    with LocalCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The module's cluster, healthy; killed nodes are restarted after the test."""
    redis_cluster.wait_healthy()
    yield redis_cluster
    for node in redis_cluster.nodes:
        if not node.running:
            node.start()
    redis_cluster.wait_healthy()


def shard_subscribers(node: ClusterNodeServer) -> list[int]:
    """Shard channel counts of the node's client connections that subscribe to any."""
    return [int(c["ssub"]) for c in node.clients() if c.get("ssub", "0") != "0"]


def reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("broadcast_app-shard")]


def receive_again(topic: Any, sub: Any, timeout: float) -> float:
    """Publish to ``topic`` until ``sub`` receives; return the seconds that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(PublishError):  # The shard may have no primary yet.
            topic.publish(b"ping")
        if sub.receive(0.1) == b"ping":
            return time.monotonic() - started
    pytest.fail(f"{topic!r} received nothing for {timeout} s")


def receive_skipping_pings(sub: Any) -> bytes | None:
    """The next message that is not from ``receive_again()``."""
    message: bytes | None
    while (message := sub.receive(WAIT)) == b"ping":
        pass
    return message


# -- routing and accounting --------------------------------------------------------------------


@on_cluster
def test_one_connection_and_thread_per_shard_with_topics(
    channel_factory: ChannelFactory, cluster: LocalCluster
) -> None:
    channel = channel_factory()
    primaries = cluster.primaries()
    threads_before = set(reader_threads())
    topics = {
        node: [
            channel.topic(channel_factory.topic_name(tag))
            for tag in cluster.hash_tags_on(node, 4)
            for _ in range(2)
        ]
        for node in primaries
    }
    with ExitStack() as stack:
        subs = {
            topic.name: [stack.enter_context(topic.subscribe()) for _ in range(3)]
            for node_topics in topics.values()
            for topic in node_topics
        }
        for node, node_topics in topics.items():
            # One connection per primary, subscribed to exactly that primary's topics.
            assert shard_subscribers(node) == [len(node_topics)]
            assert shard_subscribers(cluster.replica_of(node)) == []
            for topic in node_topics:
                assert node.shardnumsub(topic.name) == 1
                assert cluster.shardnumsub(topic.name) == 1
        assert len(set(reader_threads()) - threads_before) == len(primaries)

        for node_topics in topics.values():
            for topic in node_topics:
                topic.publish(topic.name.encode())
        for name, topic_subs in subs.items():
            for sub in topic_subs:
                assert sub.receive(WAIT) == name.encode()
                assert sub.receive(0) is None

    all_names = [topic.name for node_topics in topics.values() for topic in node_topics]
    assert wait_until(lambda: not any(map(cluster.shardnumsub, all_names)), WAIT)
    # Idle connections stay open until the channel is closed (checked by the fixture).
    assert all(shard_subscribers(node) == [] for node in primaries)


@on_cluster
def test_only_nodes_serving_subscribed_topics_are_connected(
    channel_factory: ChannelFactory, cluster: LocalCluster
) -> None:
    channel = channel_factory()
    serving, *others = cluster.primaries()
    clients_before = {node: node.connected_clients() for node in others}
    (tag,) = cluster.hash_tags_on(serving, 1)
    # Topics with one hash tag share a slot, so a shard and a connection.
    names = [channel_factory.topic_name(f"{tag}:{n}") for n in range(5)]
    with ExitStack() as stack:
        subs = [stack.enter_context(channel.topic(name).subscribe()) for name in names]
        assert shard_subscribers(serving) == [5]
        for node in others:
            assert node.connected_clients() <= clients_before[node]
        channel.topic(names[-1]).publish(b"tagged")
        assert subs[-1].receive(WAIT) == b"tagged"


@on_cluster
def test_idle_shard_readers_use_no_cpu(
    channel_factory: ChannelFactory, cluster: LocalCluster
) -> None:
    channel = channel_factory()
    tags = [tag for node in cluster.primaries() for tag in cluster.hash_tags_on(node, 3)]
    topics = [channel.topic(channel_factory.topic_name(tag)) for tag in tags]
    readers_before = set(reader_threads())
    with ExitStack() as stack:
        subs = [stack.enter_context(topic.subscribe()) for topic in topics for _ in range(5)]
        # Idle from here on: a reader for every primary, each topic subscribed once.
        shards = len(cluster.primaries())
        assert wait_until(lambda: len(set(reader_threads()) - readers_before) == shards, WAIT)
        assert wait_until(lambda: all(cluster.shardnumsub(t.name) == 1 for t in topics), WAIT)
        cpu_before = time.process_time()
        time.sleep(1.0)  # The idle second measured.
        used = time.process_time() - cpu_before
        assert used < 0.05, f"{len(subs)} idle subscriptions on 3 shards used {used:.3f} s of CPU"
        topics[-1].publish(b"awake")
        assert subs[-1].receive(WAIT) == b"awake"


@pytest.mark.parametrize("protocol", [2, 3])
def test_built_from_seed_urls_with_either_protocol(cluster: LocalCluster, protocol: int) -> None:
    baselines = {node: node.connected_clients() for node in cluster.nodes}
    # Two seeds are enough to discover all nodes.
    channel = ShardedRedisBroadcastChannel.from_url(cluster.seed_urls[:2], protocol=protocol)
    try:
        names = [
            f"{tag}:seeds" for node in cluster.primaries() for tag in cluster.hash_tags_on(node, 1)
        ]
        with ExitStack() as stack:
            subs = [stack.enter_context(channel.topic(name).subscribe()) for name in names]
            outsider = cluster.client(protocol=protocol)
            try:
                for name in names:
                    outsider.spublish(name, f"to {name}")
            finally:
                outsider.close()
            for name, sub in zip(names, subs, strict=True):
                assert sub.receive(WAIT) == f"to {name}".encode()
    finally:
        channel.close()
    # The channel closed the client it built.
    for node, baseline in baselines.items():
        assert wait_until(lambda: node.connected_clients() <= baseline, WAIT), node


# -- topology changes --------------------------------------------------------------------------


@on_cluster
def test_killed_primary_is_replaced_and_subscriptions_continue(
    channel_factory: ChannelFactory,
    cluster: LocalCluster,
    background: type[Task],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broadcast_app")
    channel = channel_factory()
    victim, survivor, *_ = cluster.primaries()
    replica = cluster.replica_of(victim)
    doomed = channel.topic(channel_factory.topic_name(cluster.hash_tags_on(victim, 1)[0]))
    steady = channel.topic(channel_factory.topic_name(cluster.hash_tags_on(survivor, 1)[0]))
    with doomed.subscribe() as on_victim, steady.subscribe() as on_survivor:
        victim.kill()
        # A subscription started during the failover is confirmed once the replica serves.
        late = doomed.subscribe()
        starter = background(late.__enter__)

        recovery = receive_again(doomed, on_victim, FAILOVER_RECOVERY)
        try:
            starter.result(channel.subscribe_timeout)
            doomed.publish(b"after the failover")
            assert receive_skipping_pings(on_victim) == b"after the failover"
            assert receive_skipping_pings(late) == b"after the failover"
        finally:
            late.close()
        assert on_victim.gaps >= 1

        # The other shard kept its subscription: no gap, and it still receives.
        assert on_survivor.gaps == 0
        steady.publish(b"still here")
        assert on_survivor.receive(WAIT) == b"still here"

        assert wait_until(lambda: cluster.owner_of(doomed.name) is replica, WAIT)
        assert replica.shardnumsub(doomed.name) == 1
        assert channel.hub.upstream.nodes().keys() == {replica.address, survivor.address}
    assert wait_until(lambda: not any(victim.address in name for name in reader_threads()), WAIT)
    assert recovery < FAILOVER_RECOVERY
    assert "Lost the Redis Pub/Sub connection" in caplog.text


def test_publishing_during_a_failover_fails_after_the_clients_retries(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = cluster.primaries()[0]
    (tag,) = cluster.hash_tags_on(victim, 1)
    retries = 2
    publisher = ShardedRedisBroadcastChannel.from_url(
        cluster.seed_urls, retry=Retry(NoBackoff(), retries)
    )
    try:
        topic = publisher.topic(f"{tag}:failover")
        topic.publish(b"before")
        client = publisher.client
        execute_once = client._execute_command
        attempts: list[float] = []

        def counted_attempt(*args: Any, **kwargs: Any) -> Any:
            attempts.append(time.monotonic())
            return execute_once(*args, **kwargs)  # type: ignore[no-untyped-call]

        # The real client, instrumented where it makes one attempt at a command (how
        # often it refreshes its topology in between differs across redis-py versions).
        monkeypatch.setattr(client, "_execute_command", counted_attempt)
        victim.kill()
        with pytest.raises(PublishError, match="failover") as caught:
            topic.publish(b"during")
        assert isinstance(caught.value.__cause__, redis.ConnectionError | ClusterDownError)
        assert len(attempts) == 1 + retries

        # Once the replica has taken over, the same channel publishes again.
        cluster.wait_failed_over(victim)
        assert wait_until(lambda: _publishes(topic), WAIT)
    finally:
        publisher.close()


def _publishes(topic: Any) -> bool:
    try:
        topic.publish(b"after")
    except PublishError:
        return False
    return True


@on_cluster
def test_manual_failover_moves_subscriptions_without_reconnecting(
    channel_factory: ChannelFactory, cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    channel = channel_factory()
    old_primary = cluster.primaries()[0]
    new_primary = cluster.replica_of(old_primary)
    tags = cluster.hash_tags_on(old_primary, 3)
    topics = [channel.topic(channel_factory.topic_name(tag)) for tag in tags]
    with ExitStack() as stack:
        subs = [stack.enter_context(topic.subscribe()) for topic in topics]
        # The old primary ends its shard subscriptions (SUNSUBSCRIBE) when it is demoted.
        new_primary.cluster("FAILOVER")
        cluster.wait_failed_over(old_primary)
        for topic, sub in zip(topics, subs, strict=True):
            receive_again(topic, sub, FAILOVER_RECOVERY)
            assert sub.gaps == 1
            assert new_primary.shardnumsub(topic.name) == 1
            assert old_primary.shardnumsub(topic.name) == 0
        assert shard_subscribers(new_primary) == [3]
    assert "Lost the Redis Pub/Sub connection" not in caplog.text


@on_cluster
def test_slot_migration_moves_only_the_moved_topic(
    channel_factory: ChannelFactory, cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    channel = channel_factory()
    source, target, *_ = cluster.primaries()
    moving_tag, staying_tag = cluster.hash_tags_on(source, 2)
    moving = channel.topic(channel_factory.topic_name(moving_tag))
    staying = channel.topic(channel_factory.topic_name(staying_tag))
    with moving.subscribe() as moved, staying.subscribe() as stayed:
        slot = int(source.cluster("KEYSLOT", moving.name))
        source_id, target_id = source.cluster("MYID"), target.cluster("MYID")
        target.cluster("SETSLOT", slot, "IMPORTING", source_id)
        source.cluster("SETSLOT", slot, "MIGRATING", target_id)
        target.cluster("SETSLOT", slot, "NODE", target_id)
        source.cluster("SETSLOT", slot, "NODE", target_id)

        receive_again(moving, moved, WAIT)
        assert moved.gaps == 1
        assert target.shardnumsub(moving.name) == 1
        assert source.shardnumsub(moving.name) == 0
        # The source's other topics kept their subscription and connection.
        staying.publish(b"unmoved")
        assert stayed.receive(WAIT) == b"unmoved"
        assert stayed.gaps == 0
        assert shard_subscribers(source) == [1]
    assert "Lost the Redis Pub/Sub connection" not in caplog.text
