"""What 1,000 open subscriptions cost: Redis connections, threads, file descriptors, memory.

1,000 subscriptions spread over 100 topics (10 each), opened from the main thread and
confirmed, with no consumer threads: the threads counted are the ones the design itself
needs. Memory is the Python heap the open subscriptions hold (``tracemalloc``, in a
second pass so that tracing does not slow the timed one); thread stacks and kernel
socket buffers come on top, for the naive baseline only. Also timed: opening them all,
and closing them all (ours one by one; the naive ones all stopped first, then closed,
which takes about one poll period in all).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import redis

from broadcast_app.backends.redis import RedisBroadcastChannel
from localservers import RedisServer, wait_until

from . import environment
from .naive import NaiveSubscription, close_all
from .stats import percentile

NUMSUB_TIMEOUT = 60.0


def _snapshot(server: RedisServer) -> dict[str, float]:
    return {
        "redis_connections": server.connected_clients(),
        "threads": environment.thread_count(),
        "fds": environment.open_fds(),
    }


def _costs(server: RedisServer, before: dict[str, float]) -> dict[str, float]:
    after = _snapshot(server)
    return {key: after[key] - before[key] for key in after}


def _all_numsub(server: RedisServer, topics: list[str], expected: int) -> Callable[[], bool]:
    return lambda: all(server.numsub(topic) == expected for topic in topics)


def _python_heap_kib(open_all: Callable[[], list[Any]], close: Callable[[list[Any]], Any]) -> float:
    """KiB of Python heap held by what ``open_all`` returns, while it is open."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        opened = open_all()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    close(opened)
    return (held - before) / 1024


def _close_each(subscriptions: list[Any]) -> list[float]:
    """Close one by one; return each close's milliseconds."""
    timings = []
    for subscription in subscriptions:
        began = time.perf_counter()
        subscription.close()
        timings.append((time.perf_counter() - began) * 1e3)
    return timings


def _measure_ours(
    server: RedisServer, client: redis.Redis, names: list[str], count: int
) -> dict[str, Any]:
    channel = RedisBroadcastChannel(client)

    def open_all() -> list[Any]:
        return [
            channel.topic(names[number % len(names)]).subscribe().__enter__()
            for number in range(count)
        ]

    try:
        before = _snapshot(server)
        began = time.perf_counter()
        subscriptions = open_all()
        opened = time.perf_counter() - began
        if not wait_until(_all_numsub(server, names, 1), NUMSUB_TIMEOUT):
            raise RuntimeError("Our subscriptions are not all known to Redis.")
        costs = _costs(server, before)
        began = time.perf_counter()
        close_times = _close_each(subscriptions)
        closed = time.perf_counter() - began
        unsubscribed = wait_until(_all_numsub(server, names, 0), NUMSUB_TIMEOUT)
        numsub_zero = time.perf_counter() - began
        heap = _python_heap_kib(open_all, _close_each)
    finally:
        channel.close()
    return {
        **costs,
        "python_heap_kib": heap,
        "open_all_s": opened,
        "close_all_s": closed,
        "close_one_p50_ms": percentile(close_times, 50),
        "close_one_max_ms": max(close_times),
        "numsub_zero_s": numsub_zero if unsubscribed else None,
    }


def _measure_naive(server: RedisServer, names: list[str], count: int) -> dict[str, Any]:
    # redis-py's pool holds at most 100 connections unless told otherwise.
    client = server.client(max_connections=count + 10)

    def open_all() -> list[Any]:
        return [NaiveSubscription(client, names[number % len(names)]) for number in range(count)]

    try:
        before = _snapshot(server)
        began = time.perf_counter()
        subscriptions = open_all()
        if not wait_until(_all_numsub(server, names, count // len(names)), NUMSUB_TIMEOUT):
            raise RuntimeError("The naive subscriptions are not all known to Redis.")
        opened = time.perf_counter() - began
        costs = _costs(server, before)
        began = time.perf_counter()
        close_all(subscriptions)
        closed = time.perf_counter() - began
        unsubscribed = wait_until(_all_numsub(server, names, 0), NUMSUB_TIMEOUT)
        numsub_zero = time.perf_counter() - began
        heap = _python_heap_kib(open_all, close_all)
    finally:
        client.close()
    return {
        **costs,
        "python_heap_kib": heap,
        "open_all_s": opened,
        "close_all_s": closed,
        "numsub_zero_s": numsub_zero if unsubscribed else None,
    }


def measure(
    server: RedisServer, client: redis.Redis, *, subscriptions: int, topics: int
) -> dict[str, Any]:
    names = [f"bench-resources-{number}" for number in range(topics)]
    result: dict[str, Any] = {"subscriptions": subscriptions, "topics": topics}
    result["ours"] = _measure_ours(server, client, names, subscriptions)
    environment.settle()
    result["naive"] = _measure_naive(server, names, subscriptions)
    return result
