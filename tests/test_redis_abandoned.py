"""A channel dropped without ``close()``: a ResourceWarning, and its reader thread and
connections are freed. While a subscription of it is referenced, it is not dropped."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import TYPE_CHECKING, Any

import pytest

from broadcast_app.backends.memory import InMemoryBroadcastChannel
from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from broadcast_app.backends.streams import StreamsBroadcastChannel
from localservers import LocalCluster, RedisServer

from .channel_helpers import drop_and_collect, engine_threads
from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    pass

CLASSES: dict[str, Any] = {
    "memory": InMemoryBroadcastChannel,
    "redis": RedisBroadcastChannel,
    "sharded": ShardedRedisBroadcastChannel,
    "streams": StreamsBroadcastChannel,
}


def make(kind: str, url: str) -> Any:
    if kind == "memory":
        return InMemoryBroadcastChannel()
    return CLASSES[kind].from_url(url)


def collected_and_closed(server: RedisServer, baseline: int) -> bool:
    gc.collect()  # A reader that ended leaves cyclic garbage holding the client.
    return server.connected_clients() <= baseline


@pytest.mark.parametrize("kind", list(CLASSES))
def test_a_channel_dropped_without_close_warns_and_frees_its_reader(
    kind: str, restartable_redis: RedisServer, no_thread_leaks: None
) -> None:
    server = restartable_redis
    before = set(threading.enumerate())
    baseline = server.connected_clients()
    channel = make(kind, server.url)
    topic = channel.topic("dropped")
    with topic.subscribe() as sub:
        topic.publish(b"one")
        assert sub.receive(WAIT) == b"one"
    dropped = weakref.ref(channel)
    held = [channel, topic, sub]
    del channel, topic, sub
    with pytest.warns(ResourceWarning, match="without close"):
        drop_and_collect(held)
    assert dropped() is None
    assert wait_until(lambda: not engine_threads(before), WAIT), engine_threads(before)
    assert wait_until(lambda: collected_and_closed(server, baseline), WAIT), server.clients()


@pytest.mark.parametrize("kind", list(CLASSES))
def test_a_referenced_subscription_keeps_its_channel(
    kind: str, restartable_redis: RedisServer, no_thread_leaks: None
) -> None:
    channel = make(kind, restartable_redis.url)
    dropped = weakref.ref(channel)
    sub = channel.topic("kept").subscribe().__enter__()
    try:
        del channel
        gc.collect()
        assert dropped() is not None
        producer = dropped().topic("kept")  # type: ignore[union-attr]
        producer.publish(b"still here")
        assert sub.receive(WAIT) == b"still here"
    finally:
        sub.close()
        owner = dropped()
        assert owner is not None
        owner.close()


def test_a_closed_channel_is_dropped_quietly(
    restartable_redis: RedisServer, recwarn: pytest.WarningsRecorder
) -> None:
    channel = RedisBroadcastChannel.from_url(restartable_redis.url)
    with channel.topic("closed").subscribe():
        pass
    channel.close()
    del channel
    gc.collect()
    assert [w for w in recwarn.list if issubclass(w.category, ResourceWarning)] == []


def test_a_dropped_cluster_channel_frees_its_shard_readers(
    redis_cluster: LocalCluster, no_thread_leaks: None
) -> None:
    before = set(threading.enumerate())
    channel = ShardedRedisBroadcastChannel.from_url(redis_cluster.seed_urls)
    topics = [channel.topic(f"{{tag{number}}}:dropped") for number in range(6)]
    for topic in topics:
        with topic.subscribe() as sub:
            topic.publish(b"one")
            assert sub.receive(WAIT) == b"one"
    assert engine_threads(before)
    dropped = weakref.ref(channel)
    held = [channel, topics, topic, sub]
    del channel, topics, topic, sub
    with pytest.warns(ResourceWarning, match="without close"):
        drop_and_collect(held)
    assert dropped() is None
    assert wait_until(lambda: not engine_threads(before), WAIT), engine_threads(before)
