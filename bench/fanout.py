"""Fan-out: one topic, N subscribers, a burst of M messages; deliveries per second.

Three consumers of the same burst, set up and torn down one after the other:

- ``naive``: N ``NaiveSubscription``s (N connections, N threads); each payload is counted
  in the subscription's own thread, so the baseline pays no hand-off to a consumer thread.
- ``ours_threads``: one channel, N subscriptions, each iterated (``for payload in sub``)
  by a consumer thread of its own, like a threaded server streaming to N clients.
- ``ours_async``: one channel, N subscriptions, each iterated (``async for``) by an
  asyncio task, all on one event loop, like an ASGI server streaming to N clients.

The publisher is the same for all three: a redis-py pipeline sending the burst in batches
of 100. Buffers are sized for the whole burst (``buffer_size`` = M), so a loss is a real
loss, never an overflow by design; losses are counted on every side. The clock runs from
the first publish to the last consumer receiving its M-th message (or to the last
delivery seen, when some never arrive).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.backends.subscription import ChannelSubscription
from localservers import RedisServer, wait_until

from .naive import NaiveSubscription, close_all
from .stats import median, spread
from .workload import JOIN_TIMEOUT, PAYLOAD, AsyncConsumers, Tally, rotated

PIPELINE_BATCH = 100
SIDES = ("naive", "ours_threads", "ours_async")


def _run_burst(client: redis.Redis, topic: str, tally: Tally) -> tuple[int, float]:
    """Publish the burst in pipelined batches and wait for it; return (deliveries, seconds)."""
    began = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for start in range(0, tally.messages, PIPELINE_BATCH):
        for _ in range(min(PIPELINE_BATCH, tally.messages - start)):
            pipe.publish(topic, PAYLOAD)
        pipe.execute()
    return tally.wait(began)


def _naive(server: RedisServer, publisher: redis.Redis, topic: str, tally: Tally) -> dict[str, Any]:
    # redis-py's pool holds at most 100 connections unless told otherwise.
    subscriber_client = server.client(max_connections=len(tally.counts) + 10)
    subscriptions = [
        NaiveSubscription(subscriber_client, topic, handler=tally.handler(number))
        for number in range(len(tally.counts))
    ]
    try:
        if not wait_until(lambda: server.numsub(topic) == len(subscriptions), 60):
            raise RuntimeError(f"{len(subscriptions)} naive subscriptions were not confirmed.")
        delivered, seconds = _run_burst(publisher, topic, tally)
    finally:
        close_all(subscriptions)
        subscriber_client.close()
    return {"delivered": delivered, "seconds": seconds, "dropped": 0}


def _ours_threads(publisher: redis.Redis, topic: str, tally: Tally) -> dict[str, Any]:
    channel = RedisBroadcastChannel(publisher, buffer_size=tally.messages)
    subscriptions = [channel.topic(topic).subscribe() for _ in tally.counts]
    ready = threading.Barrier(len(subscriptions) + 1, timeout=JOIN_TIMEOUT)

    def consume(number: int, subscription: ChannelSubscription) -> None:
        ready.wait()
        for received, _payload in enumerate(subscription, 1):
            tally.count(number)
            if received == tally.messages:
                break

    consumers = [
        threading.Thread(
            target=consume, args=(number, subscription), name=f"consumer-{number}", daemon=True
        )
        for number, subscription in enumerate(subscriptions)
    ]
    try:
        for subscription in subscriptions:
            subscription.__enter__()
        for consumer in consumers:
            consumer.start()
        ready.wait()
        delivered, seconds = _run_burst(publisher, topic, tally)
        dropped = sum(subscription.dropped for subscription in subscriptions)
    finally:
        for subscription in subscriptions:
            subscription.close()
        for consumer in consumers:
            consumer.join(JOIN_TIMEOUT)
        channel.close()
    return {"delivered": delivered, "seconds": seconds, "dropped": dropped}


def _ours_async(publisher: redis.Redis, topic: str, tally: Tally) -> dict[str, Any]:
    channel = RedisBroadcastChannel(publisher, buffer_size=tally.messages)
    subscriptions = [channel.topic(topic).subscribe() for _ in tally.counts]
    consumers = AsyncConsumers(subscriptions, tally)
    try:
        consumers.start()
        delivered, seconds = _run_burst(publisher, topic, tally)
        dropped = sum(subscription.dropped for subscription in subscriptions)
    finally:
        consumers.close()
        channel.close()
    return {"delivered": delivered, "seconds": seconds, "dropped": dropped}


def _once(
    server: RedisServer, client: redis.Redis, side: str, tally: Tally, topic: str
) -> dict[str, Any]:
    if side == "naive":
        figures = _naive(server, client, topic, tally)
    elif side == "ours_threads":
        figures = _ours_threads(client, topic, tally)
    else:
        figures = _ours_async(client, topic, tally)
    figures["losses"] = tally.expected - figures["delivered"]
    figures["msg_per_s"] = figures["delivered"] / figures["seconds"]
    return figures


def measure(
    server: RedisServer, client: redis.Redis, *, subscribers: int, messages: int, rounds: int
) -> dict[str, Any]:
    """Median deliveries per second, and losses, of every side over ``rounds`` rounds."""
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for number in range(rounds):
        for side in rotated(SIDES, number):
            topic = f"bench-fanout-{subscribers}-{side}-{number}"
            runs[side].append(_once(server, client, side, Tally(subscribers, messages), topic))
    result: dict[str, Any] = {"subscribers": subscribers, "messages": messages, "rounds": rounds}
    for side, figures in runs.items():
        rates = [run["msg_per_s"] for run in figures]
        result[side] = {
            "msg_per_s": median(rates),
            "losses": sum(run["losses"] for run in figures),
            "dropped": sum(run["dropped"] for run in figures),
            "rates": rates,
            "seconds": [run["seconds"] for run in figures],
            "noise": spread(rates),
        }
    return result
