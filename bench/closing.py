"""``close()`` latency: how long ``close()`` takes to return, and to wake a blocked consumer.

Each sample subscribes to a topic of its own (so closing is the last local subscriber
leaving and sends UNSUBSCRIBE), starts a consumer thread blocked in ``receive(None)``,
then closes from the main thread. Also timed: until ``PUBSUB NUMSUB`` reads 0.

The naive baseline's thread polls with a one-second timeout; its samples wait a random
part of that period before closing, so they see every phase of the poll.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from broadcast_app.backends.redis import RedisBroadcastChannel
from localservers import RedisServer, wait_until

from .naive import POLL_TIMEOUT, NaiveSubscription
from .stats import percentile

#: Seconds a consumer gets to block in receive() before the close.
BLOCK_DELAY = 0.02
JOIN_TIMEOUT = 5.0


def _sample(
    server: RedisServer,
    topic: str,
    receive: Callable[[], object],
    close: Callable[[], None],
    delay: float,
) -> dict[str, float]:
    """Close while a consumer is blocked in ``receive``; timings in milliseconds."""
    woke_at: list[float] = []
    blocked = threading.Event()

    def consume() -> None:
        blocked.set()
        try:
            receive()
        except Exception:  # The close being measured.
            woke_at.append(time.perf_counter())

    consumer = threading.Thread(target=consume, name="close-consumer", daemon=True)
    consumer.start()
    blocked.wait(JOIN_TIMEOUT)
    time.sleep(delay)
    began = time.perf_counter()
    close()
    returned = time.perf_counter()
    consumer.join(JOIN_TIMEOUT)
    wait_until(lambda: server.numsub(topic) == 0, JOIN_TIMEOUT, interval=0.0005)
    unsubscribed = time.perf_counter()
    if not woke_at:
        raise RuntimeError(f"Closing {topic!r} did not wake its consumer.")
    return {
        "return_ms": (returned - began) * 1e3,
        "wake_ms": (woke_at[0] - began) * 1e3,
        "numsub_zero_ms": (unsubscribed - began) * 1e3,
    }


def _summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"samples": len(samples)}
    for key in ("return_ms", "wake_ms", "numsub_zero_ms"):
        values = [sample[key] for sample in samples]
        summary[key] = {
            "p50": percentile(values, 50),
            "p99": percentile(values, 99),
            "max": max(values),
        }
    return summary


def _subscribed(server: RedisServer, topic: str) -> bool:
    return server.numsub(topic) == 1


def measure(
    server: RedisServer, client: redis.Redis, *, samples: int, naive_samples: int
) -> dict[str, Any]:
    """p50/p99/max of every timing, ours over ``samples`` closes, naive over fewer."""
    channel = RedisBroadcastChannel(client)
    ours = []
    try:
        for number in range(samples):
            topic = f"bench-close-ours-{number}"
            subscription = channel.topic(topic).subscribe().__enter__()
            ours.append(
                _sample(
                    server,
                    topic,
                    functools.partial(subscription.receive, None),
                    subscription.close,
                    BLOCK_DELAY,
                )
            )
    finally:
        channel.close()
    naive = []
    for number in range(naive_samples):
        topic = f"bench-close-naive-{number}"
        baseline = NaiveSubscription(client, topic)
        wait_until(functools.partial(_subscribed, server, topic), JOIN_TIMEOUT)
        delay = BLOCK_DELAY + random.uniform(0, POLL_TIMEOUT)
        naive.append(
            _sample(server, topic, functools.partial(baseline.receive, None), baseline.close, delay)
        )
    return {"ours": _summary(ours), "naive": _summary(naive)}
