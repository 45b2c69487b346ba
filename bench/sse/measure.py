"""One server run per (path, N): open N streams, read the costs, broadcast, then release
or drain. And one run per path with stalled clients.

Every figure comes from the server process itself (/proc) or from the clients' receive
times; the publisher stamps ``time.time()`` into each payload just before PUBLISH and
the clients subtract it from their own ``time.time()`` (one machine, one clock).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from localservers import RedisServer, wait_until

from ..stats import percentile
from .loadgen import ClientPool
from .paths import TOPIC
from .server import StreamServer, Usage

#: Most connections a client process has connecting at once.
CONCURRENCY = 500
#: Seconds allowed per stream opened, on top of a fixed minute (the view opens ~80/s).
OPEN_SECONDS_PER_STREAM = 0.05
#: How long the process must look idle before its baseline is read.
SETTLE_SECONDS = 1.0
#: Seconds a release or a drain is given before it is reported as not done.
RELEASE_TIMEOUT = 60.0
DRAIN_TIMEOUT = 15.0


@dataclass
class Plan:
    """What one run measures; the defaults are the full benchmark's."""

    messages: int = 10
    payload_bytes: int = 64
    idle_window: float = 5.0
    stall_healthy: int = 1000
    stalled: int = 100
    stall_payload_bytes: int = 16 * 1024
    stall_rate: float = 2.0
    stall_seconds: float = 10.0
    stalled_rcvbuf: int = 4096
    flavour: str = "asyncio"
    paths: dict[str, str] = field(default_factory=dict)


def payload(seq: int, size: int) -> bytes:
    """A message stamped with its publish time and sequence number, padded to ``size``."""
    head = f"t={time.time():.6f};s={seq};".encode()
    return head + b"x" * max(0, size - len(head))


def publish_at(
    client: redis.Redis, rate: float, count: int, size: int, at: Callable[[int], None] | None = None
) -> None:
    """Publish ``count`` stamped messages at ``rate`` per second; call ``at(seq)`` first."""
    started = time.monotonic()
    for seq in range(count):
        delay = started + seq / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if at is not None:
            at(seq)
        client.publish(TOPIC, payload(seq, size))


def _delivery(latencies: list[float], expected: int) -> dict[str, Any]:
    return {
        "delivered": len(latencies),
        "expected": expected,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
    }


class Run:
    """One server, the streams the pool opens on it, and the figures read from both."""

    def __init__(
        self, redis_server: RedisServer, pool: ClientPool, plan: Plan, kind: str, secret_key: str
    ) -> None:
        self.redis = redis_server
        self.pool = pool
        self.plan = plan
        self.path = plan.paths[kind]
        self.server = StreamServer(redis_server, secret_key, plan.flavour)
        self.publisher = redis_server.client()

    def __enter__(self) -> Run:
        self.server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            for group in ("main", "stalled", "warm"):
                self.pool.command("drop", group=group)
        finally:
            self.publisher.close()
            self.server.stop()

    def open(self, group: str, count: int, **options: Any) -> dict[str, Any]:
        timeout = 60 + count * OPEN_SECONDS_PER_STREAM
        return self.pool.open(
            group,
            count,
            self.server.port,
            self.path,
            timeout=timeout,
            concurrency=CONCURRENCY,
            **options,
        )

    def idle(self) -> Usage:
        """Warm up with one stream, let it go, and read the idle process."""
        self.open("warm", 1)
        self.pool.drop("warm")
        wait_until(lambda: self.redis.numsub(TOPIC) == 0, RELEASE_TIMEOUT)
        time.sleep(SETTLE_SECONDS)
        return self.server.usage()

    def broadcast(
        self,
        group: str,
        streams: int,
        rate: float,
        count: int,
        size: int,
        at: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Publish ``count`` messages at ``rate``; their delivery to ``group``."""
        return _delivery(*self.deliveries(group, streams, rate, count, size, at))

    def deliveries(
        self,
        group: str,
        streams: int,
        rate: float,
        count: int,
        size: int,
        at: Callable[[int], None] | None = None,
    ) -> tuple[list[float], int]:
        """Publish ``count`` messages at ``rate``; the latencies (s) of their deliveries
        to ``group``, and how many deliveries were expected."""
        self.pool.latencies(group)
        before = self.pool.state(group)["messages"]
        publish_at(self.publisher, rate, count, size, at)
        expected = streams * count
        wait_until(lambda: self.pool.state(group)["messages"] - before >= expected, 30, 0.2)
        return self.pool.latencies(group), expected


def _wait_release(run: Run, idle: Usage) -> dict[str, float | None]:
    """Hang up every stream; seconds until the subscription and the threads are gone."""
    dropped = run.pool.drop("main")
    done: dict[str, float | None] = {"subscription_s": None, "threads_s": None}
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while time.monotonic() < deadline and None in done.values():
        now = time.time() - dropped
        if done["subscription_s"] is None and run.redis.numsub(TOPIC) == 0:
            done["subscription_s"] = now
        if done["threads_s"] is None and run.server.usage().threads <= idle.threads:
            done["threads_s"] = now
        time.sleep(0.05)
    return done


def _drain(run: Run) -> dict[str, float | None]:
    """SIGTERM the server; seconds until every stream ended and until the process exited."""
    process = run.server.process
    assert process is not None
    exited: list[float | None] = []
    waiter = threading.Thread(target=lambda: exited.append(_exit_time(process)), daemon=True)
    signalled = time.time()
    run.server.terminate()
    waiter.start()
    ended = run.pool.wait_ended("main", DRAIN_TIMEOUT)
    waiter.join(DRAIN_TIMEOUT)
    all_ended = ended["ended"] == ended["streams"] and ended["last"] is not None
    return {
        "streams_ended": ended["ended"],
        "streams_ended_s": ended["last"] - signalled if all_ended else None,
        "exit_s": exited[0] - signalled if exited and exited[0] is not None else None,
    }


def _exit_time(process: subprocess.Popen[bytes]) -> float | None:
    try:
        process.wait(DRAIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    return time.time()


def streams_at(
    redis_server: RedisServer,
    pool: ClientPool,
    plan: Plan,
    kind: str,
    n: int,
    secret_key: str,
    drain: bool,
) -> dict[str, Any]:
    """Open ``n`` streams on ``kind``'s path of a fresh server and measure them."""
    with Run(redis_server, pool, plan, kind, secret_key) as run:
        idle = run.idle()
        opened = run.open("main", n)
        after_open = run.server.usage()
        figures: dict[str, Any] = {"kind": kind, "n": n, "open": opened}
        if opened["opened"] < n:
            return figures | {"error": f"only {opened['opened']} of {n} streams opened"}
        wait_until(lambda: redis_server.numsub(TOPIC) >= 1, 10)
        time.sleep(SETTLE_SECONDS)
        held = run.server.usage()
        time.sleep(plan.idle_window)
        quiet = run.server.usage()
        figures |= {
            "opens_per_s": n / opened["seconds"],
            "threads_idle": idle.threads,
            "threads_above_idle": held.threads - idle.threads,
            "rss_kib_per_stream": (held.rss_kib - idle.rss_kib) / n,
            "fds_above_idle": held.fds - idle.fds,
            "idle_cpu_percent": 100 * (quiet.cpu_s - held.cpu_s) / plan.idle_window,
            # CPU time is what the machine's load does not change much: it explains the
            # wall-clock figures of a busy machine.
            "open_cpu_ms_per_stream": 1e3 * (after_open.cpu_s - idle.cpu_s) / n,
        }
        clients_before = run.pool.cpu_s()
        figures["delivery"] = run.broadcast("main", n, 1.0, plan.messages, plan.payload_bytes)
        deliveries = n * plan.messages
        figures["delivery"] |= {
            "server_cpu_us_per_delivery": 1e6
            * (run.server.usage().cpu_s - quiet.cpu_s)
            / deliveries,
            "clients_cpu_us_per_delivery": 1e6 * (run.pool.cpu_s() - clients_before) / deliveries,
        }
        if drain:
            figures["drain"] = _drain(run)
        else:
            figures["release"] = _wait_release(run, idle)
        return figures


def floor(
    redis_server: RedisServer, pool: ClientPool, plan: Plan, n: int, secret_key: str
) -> dict[str, Any]:
    """``n`` open responses of uvicorn alone (``bench.sse.app.FLOOR_PATH``): what the
    server holds per stream before any stream path adds its own."""
    with Run(redis_server, pool, plan, "floor", secret_key) as run:
        idle = run.idle()
        opened = run.open("main", n)
        if opened["opened"] < n:
            return {"n": n, "error": f"only {opened['opened']} of {n} streams opened"}
        time.sleep(SETTLE_SECONDS)
        held = run.server.usage()
        return {
            "n": n,
            "open": opened,
            "opens_per_s": n / opened["seconds"],
            "open_cpu_ms_per_stream": 1e3 * (held.cpu_s - idle.cpu_s) / n,
            "threads_above_idle": held.threads - idle.threads,
            "rss_kib_per_stream": (held.rss_kib - idle.rss_kib) / n,
        }


def stalled(
    redis_server: RedisServer, pool: ClientPool, plan: Plan, kind: str, secret_key: str
) -> dict[str, Any]:
    """Healthy streams' delivery with and without ``plan.stalled`` stalled clients, which
    stop reading (small receive buffers) and hang up halfway with their backlogs.

    The phases: a warm-up broadcast (not counted: the first large messages grow the
    buffers), then without, with, and without again; "without" is both together, so a
    machine's slow spell is less likely to hit one side only.
    """
    with Run(redis_server, pool, plan, kind, secret_key) as run:
        run.idle()
        healthy = plan.stall_healthy
        opened = run.open("main", healthy)
        if opened["opened"] < healthy:
            return {"kind": kind, "error": f"only {opened['opened']} of {healthy} opened"}
        count = round(plan.stall_rate * plan.stall_seconds)
        size = plan.stall_payload_bytes

        def phase(at: Callable[[int], None] | None = None) -> tuple[list[float], int]:
            return run.deliveries("main", healthy, plan.stall_rate, count, size, at)

        run.deliveries("main", healthy, plan.stall_rate, count // 2, size)
        before, expected = phase()
        run.open("stalled", plan.stalled, rcvbuf=plan.stalled_rcvbuf, stall=True)
        opened_stalled = run.server.usage()
        peak: list[Usage] = []

        def hang_up_halfway(seq: int) -> None:
            if seq == count // 2:
                peak.append(run.server.usage())
                pool.drop("stalled")

        with_stalled = _delivery(*phase(hang_up_halfway))
        after, _ = phase()
        without = _delivery(before + after, 2 * expected)
        held = (peak[0].rss_kib - opened_stalled.rss_kib) / plan.stalled if peak else None
        return {
            "kind": kind,
            "healthy": healthy,
            "stalled": plan.stalled,
            "payload_bytes": size,
            "rate": plan.stall_rate,
            "without": without,
            "with": with_stalled,
            "rss_kib_per_stalled_at_hang_up": held,
            "p99_ratio": with_stalled["p99_ms"] / without["p99_ms"],
        }
