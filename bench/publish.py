"""Publish throughput: ``topic.publish()`` against ``redis.Redis.publish()`` on one client.

Both sides send the same 64-byte payload to a channel nobody subscribes to, through the
same client and connection pool, from 1 or more long-lived threads. Many short rounds
alternate the two sides (ABBA order), and the figure is the median of the per-round
ratios: rounds side by side see the same machine, so most of its drift cancels out.
``compare`` does this for any two publish functions (the sharded and streams
measurements use it too).

Also measured, without the network: the CPU time ``topic.publish()`` adds to each
``client.publish()`` call (the client's ``publish`` replaced by a no-op).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from broadcast_app.backends.redis import RedisBroadcastChannel

from .stats import median, percentile, spread
from .workload import PAYLOAD

TOPIC = "bench-publish"
OVERHEAD_CALLS = 200_000
#: Seconds a round may take before the measurement is abandoned.
ROUND_TIMEOUT = 60.0

Publish = Callable[[bytes], object]


class Publishers:
    """``threads`` threads that publish ``count`` messages each per round, on command."""

    def __init__(self, threads: int) -> None:
        self._start = threading.Barrier(threads + 1, timeout=ROUND_TIMEOUT)
        self._done = threading.Barrier(threads + 1, timeout=ROUND_TIMEOUT)
        self._publish: Publish = bytes
        self._count = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"publisher-{number}", daemon=True)
            for number in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        try:
            while True:
                self._start.wait()
                for _ in range(self._count):
                    self._publish(PAYLOAD)
                self._done.wait()
        except threading.BrokenBarrierError:
            return  # close(), or another worker failed.
        except BaseException:
            # Wake the main thread (BrokenBarrierError) instead of leaving it waiting.
            self._start.abort()
            self._done.abort()
            raise

    def round(self, publish: Publish, count: int) -> float:
        """Seconds the threads took to publish ``count`` messages each."""
        self._publish, self._count = publish, count
        self._start.wait()
        began = time.perf_counter()
        self._done.wait()
        return time.perf_counter() - began

    def close(self) -> None:
        self._start.abort()  # Every worker waiting for a round wakes and ends.
        for thread in self._threads:
            thread.join(ROUND_TIMEOUT)


class _NoIOPublish(redis.Redis):
    """A client whose ``publish()`` does no I/O: timing it leaves the caller's own cost."""

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> int:
        return 0


def overhead_us(client: redis.Redis) -> float:
    """Microseconds of CPU ``topic.publish()`` adds to each ``client.publish()`` call."""
    stub = _NoIOPublish(connection_pool=client.connection_pool)
    channel = RedisBroadcastChannel(stub)
    topic = channel.topic(TOPIC)
    timings: dict[str, list[float]] = {"raw": [], "ours": []}
    try:
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(OVERHEAD_CALLS):
                stub.publish(TOPIC, PAYLOAD)
            timings["raw"].append(time.perf_counter() - began)
            began = time.perf_counter()
            for _ in range(OVERHEAD_CALLS):
                topic.publish(PAYLOAD)
            timings["ours"].append(time.perf_counter() - began)
    finally:
        channel.close()
    # The fastest of several tries is the least disturbed by other processes.
    return (min(timings["ours"]) - min(timings["raw"])) / OVERHEAD_CALLS * 1e6


def compare(
    ours: Publish, raw: Publish, *, threads: int, messages: int, rounds: int
) -> dict[str, Any]:
    """Rates of ``ours`` and ``raw`` over ``rounds`` ABBA rounds of ``messages`` messages
    from ``threads`` threads, and the median of the per-round ratios."""
    sides = {"raw": raw, "ours": ours}
    per_thread = messages // threads
    sent = per_thread * threads
    publishers = Publishers(threads)
    rates: dict[str, list[float]] = {"raw": [], "ours": []}
    ratios = []
    try:
        # Warm-up: the pool opens a connection for each thread.
        for publish in sides.values():
            publishers.round(publish, per_thread)
        for number in range(rounds):
            order = ("raw", "ours") if number % 2 == 0 else ("ours", "raw")
            for side in order:
                rates[side].append(sent / publishers.round(sides[side], per_thread))
            ratios.append(rates["ours"][-1] / rates["raw"][-1])
    finally:
        publishers.close()
    return {
        "threads": threads,
        "messages_per_round": sent,
        "payload_bytes": len(PAYLOAD),
        "rounds": rounds,
        "raw_msg_per_s": median(rates["raw"]),
        "ours_msg_per_s": median(rates["ours"]),
        "ratio": median(ratios),
        "ratio_iqr": [percentile(ratios, 25), percentile(ratios, 75)],
        "raw_rates": rates["raw"],
        "ours_rates": rates["ours"],
        "ratios": ratios,
        "noise": {"raw": spread(rates["raw"]), "ours": spread(rates["ours"])},
    }


def measure(client: redis.Redis, *, threads: int, messages: int, rounds: int) -> dict[str, Any]:
    """``topic.publish()`` against ``client.publish()``: see ``compare``."""
    channel = RedisBroadcastChannel(client)
    topic = channel.topic(TOPIC)

    def raw(payload: bytes) -> object:
        return client.publish(TOPIC, payload)

    try:
        return compare(topic.publish, raw, threads=threads, messages=messages, rounds=rounds)
    finally:
        channel.close()
