"""Publish-to-receive latency of one subscriber: ours, raw redis-py, the naive baseline.

Each sample publishes one 64-byte message stamped with ``perf_counter_ns()`` and waits
until the consumer thread has received it, so no sample queues behind another. The
clock runs from just before the publish call to just after the consumer's receive
returns. The sides take turns sample by sample, so a slow spell on the shared machine
hits every side alike.

- ``raw``: a redis-py ``PubSub`` read by the consumer thread with ``get_message()``.
- ``ours``: ``topic.publish()`` and a consumer thread blocked in ``receive(None)``.
- ``naive``: ``NaiveSubscription.receive(None)`` (its own thread hands over each payload).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from broadcast_app.backends.redis import RedisBroadcastChannel
from localservers import RedisServer, wait_until

from .naive import NaiveSubscription
from .stats import percentile

PADDING = bytes(56)
ACK_TIMEOUT = 5.0
#: Lost samples after which the measurement is abandoned (the server is in trouble).
MAX_LOST = 10
SIDES = ("raw", "ours", "naive")


def _stamp() -> bytes:
    return time.perf_counter_ns().to_bytes(8, "big") + PADDING


class Probe:
    """One side: a publish function and a consumer thread that acknowledges each receipt."""

    def __init__(
        self, name: str, publish: Callable[[bytes], object], receive: Callable[[], bytes | None]
    ) -> None:
        self.name = name
        self.samples_ms: list[float] = []
        self.lost = 0
        self._publish = publish
        self._receive = receive
        self._received = threading.Event()
        self._latest_ns = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._consume, name=f"latency-{name}", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while not self._stopping:
            try:
                payload = self._receive()
            except Exception:  # The subscription was closed by stop().
                return
            if payload is None:
                continue
            self._latest_ns = time.perf_counter_ns() - int.from_bytes(payload[:8], "big")
            self._received.set()

    def sample(self) -> None:
        self._received.clear()
        self._publish(_stamp())
        if self._received.wait(ACK_TIMEOUT):
            self.samples_ms.append(self._latest_ns / 1e6)
        else:
            self.lost += 1
            if self.lost > MAX_LOST:
                raise RuntimeError(f"{self.name}: {self.lost} samples were never received.")

    def stop(self, wake: Callable[[], object]) -> None:
        """End the consumer thread; ``wake`` unblocks its receive call."""
        self._stopping = True
        wake()
        self._thread.join(ACK_TIMEOUT)

    def summary(self) -> dict[str, Any]:
        return {
            "samples": len(self.samples_ms),
            "lost": self.lost,
            "p50_ms": percentile(self.samples_ms, 50),
            "p99_ms": percentile(self.samples_ms, 99),
            "max_ms": max(self.samples_ms, default=float("nan")),
            "mean_ms": sum(self.samples_ms) / max(1, len(self.samples_ms)),
        }


def _raw_receiver(pubsub: redis.client.PubSub) -> Callable[[], bytes | None]:
    def receive() -> bytes | None:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is None or message["type"] != "message":
            return None
        data: bytes = message["data"]
        return data

    return receive


def measure(server: RedisServer, client: redis.Redis, *, samples: int) -> dict[str, Any]:
    """p50/p99 latency of every side over ``samples`` samples each."""
    channel = RedisBroadcastChannel(client)
    topics = {side: f"bench-latency-{side}" for side in SIDES}
    pubsub = client.pubsub()
    pubsub.subscribe(topics["raw"])
    subscription = channel.topic(topics["ours"]).subscribe().__enter__()
    naive = NaiveSubscription(client, topics["naive"])
    ours_topic = channel.topic(topics["ours"])
    probes = [
        Probe("raw", lambda p: client.publish(topics["raw"], p), _raw_receiver(pubsub)),
        Probe("ours", ours_topic.publish, lambda: subscription.receive(None)),
        Probe("naive", lambda p: client.publish(topics["naive"], p), lambda: naive.receive(None)),
    ]
    stops: list[Callable[[], object]] = [lambda: None, subscription.close, naive.stop]
    try:
        if not wait_until(lambda: all(server.numsub(t) == 1 for t in topics.values()), 10):
            raise RuntimeError("The latency subscriptions were not confirmed.")
        for probe in probes:  # Warm-up, not recorded.
            for _ in range(50):
                probe.sample()
            probe.samples_ms.clear()
        for number in range(samples):
            shift = number % len(probes)
            for probe in probes[shift:] + probes[:shift]:
                probe.sample()
    finally:
        for probe, stop in zip(probes, stops, strict=True):
            probe.stop(stop)
        naive.close()
        pubsub.close()
        channel.close()
    result: dict[str, Any] = {"payload_bytes": 64, "samples": samples}
    for probe in probes:
        result[probe.name] = probe.summary()
    result["p99_excess_ms"] = result["ours"]["p99_ms"] - result["raw"]["p99_ms"]
    result["p50_excess_ms"] = result["ours"]["p50_ms"] - result["raw"]["p50_ms"]
    return result
