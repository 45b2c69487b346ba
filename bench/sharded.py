"""Sharded Pub/Sub (SPUBLISH / SSUBSCRIBE): a local Redis Cluster against one server.

Both targets use ``ShardedRedisBroadcastChannel``: the single server is the run's private
redis-server (a ``redis.Redis``), the cluster a private 3-primary, 3-replica
``localservers.LocalCluster`` started here (a ``RedisCluster``). Topics carry hash tags
spread over the slots, so on the cluster they land on every shard.

- publish: one thread publishing round-robin over the topics, through the channel and
  through the client's raw ``spublish``, in ABBA rounds (``publish.compare``).
- fan-out: every topic has the same number of subscriptions, consumed by asyncio tasks
  on one event loop; four threads publish a burst to every topic, in pipelines of 100
  ``SPUBLISH`` straight to the node serving the topic (so the publisher is cheap on both
  targets and the figure is the subscribers' side). Deliveries per second from the
  first publish to the last delivery, losses, and the Redis CPU time the servers spent
  (the sum, and the busiest node: what sharding spreads). The targets take turns
  round by round.

All nodes run on this machine, so the cluster cannot show more CPU than it has; the
figures show the engine's cost of routing and the way the load splits over shards.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from redis.cluster import RedisCluster

from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from localservers import LocalCluster, RedisServer

from . import publish
from .stats import median, spread
from .workload import PAYLOAD, AsyncConsumers, Tally, rotated

PUBLISHER_THREADS = 4
PIPELINE_BATCH = 100
TARGETS = ("single", "cluster")

Client = redis.Redis | RedisCluster


def _topic_names(count: int) -> list[str]:
    # Hash tags 0..count-1 hash to slots spread all over the 16,384.
    return [f"{{{number}}}bench-sharded" for number in range(count)]


def _redis_cpu_seconds(servers: list[RedisServer]) -> list[float]:
    cpu = []
    for server in servers:
        with server.client(decode_responses=True) as admin:
            info = admin.info("cpu")
        cpu.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return cpu


def _node_client(client: Client, name: str) -> redis.Redis:
    """The client of the server that serves shard channel ``name``."""
    if isinstance(client, redis.Redis):
        return client
    node_client: redis.Redis = client.get_redis_connection(
        client.get_node_from_key(name)  # type: ignore[no-untyped-call]
    )
    return node_client


def _publish(client: Client, names: list[str], messages: int, rounds: int) -> dict[str, Any]:
    channel = ShardedRedisBroadcastChannel(client)
    topics = itertools.cycle([channel.topic(name) for name in names])
    channels = itertools.cycle(names)

    def ours(payload: bytes) -> None:
        next(topics).publish(payload)

    def raw(payload: bytes) -> object:
        return client.spublish(next(channels), payload)

    try:
        return publish.compare(ours, raw, threads=1, messages=messages, rounds=rounds)
    finally:
        channel.close()


def _burst(client: Client, names: list[str], messages: int) -> None:
    """Publish ``messages`` payloads to every topic, from ``PUBLISHER_THREADS`` threads."""

    def send(share: list[str]) -> None:
        pipes = {name: _node_client(client, name).pipeline(transaction=False) for name in share}
        for number in range(messages):
            for name in share:
                pipes[name].spublish(name, PAYLOAD)
            if number % PIPELINE_BATCH == PIPELINE_BATCH - 1 or number == messages - 1:
                for pipe in pipes.values():
                    pipe.execute()

    with ThreadPoolExecutor(PUBLISHER_THREADS) as pool:
        list(
            pool.map(send, [names[start::PUBLISHER_THREADS] for start in range(PUBLISHER_THREADS)])
        )


def _fanout(
    client: Client, servers: list[RedisServer], names: list[str], subscribers: int, messages: int
) -> dict[str, Any]:
    """One burst of ``messages`` to each topic, ``subscribers`` asyncio consumers each."""
    channel = ShardedRedisBroadcastChannel(client, buffer_size=messages)
    subscriptions = [channel.topic(name).subscribe() for name in names for _ in range(subscribers)]
    tally = Tally(len(subscriptions), messages)
    consumers = AsyncConsumers(subscriptions, tally)
    try:
        consumers.start()
        readers = sum(t.name.startswith("broadcast_app-shard") for t in threading.enumerate())
        cpu_before = _redis_cpu_seconds(servers)
        began = time.perf_counter()
        _burst(client, names, messages)
        delivered, seconds = tally.wait(began)
        cpu_after = _redis_cpu_seconds(servers)
    finally:
        consumers.close()
        channel.close()
    cpu = [after - before for after, before in zip(cpu_after, cpu_before, strict=True)]
    return {
        "msg_per_s": delivered / seconds,
        "losses": tally.expected - delivered,
        "reader_threads": readers,
        "redis_cpu_s": cpu,
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["msg_per_s"] for run in runs]
    return {
        "msg_per_s": median(rates),
        "rates": rates,
        "losses": sum(run["losses"] for run in runs),
        "reader_threads": max(run["reader_threads"] for run in runs),
        "redis_cpu_s_total": median([sum(run["redis_cpu_s"]) for run in runs]),
        "redis_cpu_s_busiest_node": median([max(run["redis_cpu_s"]) for run in runs]),
        "noise": spread(rates),
        "runs": runs,
    }


def measure(
    server: RedisServer,
    *,
    topics: int,
    subscribers: int,
    messages: int,
    publish_messages: int,
    publish_rounds: int,
    fanout_rounds: int,
) -> dict[str, Any]:
    """Publish and fan-out figures of the single ``server`` and of a local cluster.

    Starts (and stops) its own ``LocalCluster``; ``server`` is left running.
    """
    names = _topic_names(topics)
    figures: dict[str, Any] = {
        "topics": topics,
        "subscribers_per_topic": subscribers,
        "messages_per_topic": messages,
        "payload_bytes": len(PAYLOAD),
    }
    with LocalCluster() as cluster:
        targets: dict[str, tuple[Client, list[RedisServer]]] = {
            "single": (server.client(), [server]),
            "cluster": (cluster.client(), list(cluster.primaries())),
        }
        runs: dict[str, list[dict[str, Any]]] = {target: [] for target in TARGETS}
        try:
            for target, (client, _servers) in targets.items():
                figures[target] = {
                    "publish": _publish(client, names, publish_messages, publish_rounds)
                }
            for number in range(fanout_rounds):
                for target in rotated(TARGETS, number):
                    client, servers = targets[target]
                    runs[target].append(_fanout(client, servers, names, subscribers, messages))
        finally:
            for client, _servers in targets.values():
                client.close()
    for target in TARGETS:
        figures[target]["fanout"] = _summary(runs[target])
    figures["cluster"]["primaries"] = cluster.primary_count
    return figures
