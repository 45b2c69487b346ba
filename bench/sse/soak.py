"""``python -m bench.sse.soak``: streams through Redis restarts (``make soak``).

A uvicorn worker serves testproject (streams through the fast path); one client process
holds 500 streams of one topic; a publisher sends 50 stamped, numbered messages per
second; every 60 s Redis is killed with SIGKILL and started again on its port. After
each restart, once every stream has resumed (or 30 s passed), it prints: streams
resumed, the time from Redis answering again to each stream's first message
(p50/p99/max), the ``gap`` events sent, the messages lost outside the outages and
missed while resuming, and the server's RSS, threads and descriptors. At the end the
clients hang up, and ``PUBSUB NUMSUB`` and the server's threads and descriptors must
come back to what they were before the first stream.

Messages lost outside the outages: a stream misses message ``s`` although Redis
acknowledged ``s`` (PUBLISH returned) before the kill that ended the stretch in which
the stream was subscribed, i.e. before the next kill after the stream's previous
message. Messages that failed to publish (Redis down) are the outage itself;
messages acknowledged after Redis answered again but before the stream resubscribed
are "missed while resuming", the cost of the resume delay. The first must be 0.

Exits 1 on any loss outside the outages, any stream that never resumed, or a leak
(threads or descriptors above the first restart's once streams resumed, RSS grown by
half, or NUMSUB, threads or descriptors not back to idle at the end).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from localservers import RedisServer, wait_until

from .. import environment
from ..report import RESULTS
from ..stats import percentile
from .loadgen import ClientPool
from .paths import TOPIC, configure, stream_paths
from .publisher import Publisher
from .server import StreamServer, Usage

#: Seconds every stream is given to resume after a restart.
RESUME_TIMEOUT = 30.0
#: Descriptors and threads a process may hold beyond the reference without a leak
#: (a connection being replaced, a timer thread).
FD_SLACK = 4
THREAD_SLACK = 1
#: Growth of RSS from the first restart to the last that counts as a leak.
RSS_GROWTH_LIMIT = 0.5


@dataclass
class Outage:
    """A kill and restart: when, and the numbers of the messages published then."""

    killed_at: float
    kill_seq: int
    up_at: float
    up_seq: int

    def failed_publishes(self, acked_at: list[float | None]) -> int:
        return sum(acked is None for acked in acked_at[self.kill_seq : self.up_seq])


@dataclass
class Ledger:
    """What the soak saw, and the verdicts so far."""

    outages: list[Outage] = field(default_factory=list)
    usages: list[Usage] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    lost: int = 0
    gaps_seen: int = 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sse.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="Length of the run.")
    parser.add_argument("--period", type=float, default=60.0, help="Seconds between kills.")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="Messages per second.")
    parser.add_argument("--backend", choices=("pubsub", "streams"), default="pubsub")
    parser.add_argument("--flavour", choices=("asyncio", "uvloop"), default="asyncio")
    return parser.parse_args(argv)


def _say(started: float, message: str) -> None:
    load = os.getloadavg()[0]
    print(f"[{time.monotonic() - started:6.1f} s, load {load:.1f}] {message}", flush=True)


def classify(
    jumps: list[list[float]], acked_at: list[float | None], outages: list[Outage]
) -> dict[str, Any]:
    """Sort the messages the jumps skipped: lost outside the outages, missed while
    resuming, or not published; and each stream's first message after each outage."""
    kills = [outage.killed_at for outage in outages]
    lost = resuming = failed = 0
    first_after: dict[tuple[int, int], float] = {}
    for stream, expected, got, at in jumps:
        # The stretch the stream was in ended with the last kill before it heard again.
        index = bisect.bisect_left(kills, at) - 1
        outage = outages[index] if index >= 0 else None
        if outage is not None:
            key = (int(stream), index)
            first_after[key] = min(first_after.get(key, at), at)
        for seq in range(int(expected), int(got)):
            acked = acked_at[seq] if seq < len(acked_at) else None
            if acked is None:
                failed += 1
            elif outage is None or acked < outage.killed_at:
                lost += 1
            else:
                resuming += 1
    return {"lost": lost, "resuming": resuming, "failed": failed, "first_after": first_after}


def _restart(redis_server: RedisServer, publisher: Publisher) -> Outage:
    """Kill Redis with SIGKILL and start it again on its port; the outage's times."""
    killed_at, kill_seq = time.time(), publisher.started
    redis_server.kill()
    answered: list[tuple[float, int]] = []
    poller = threading.Thread(
        target=lambda: answered.append(_first_answer(redis_server.port, publisher)), daemon=True
    )
    poller.start()
    redis_server.start()
    poller.join(RESUME_TIMEOUT)
    up_at, up_seq = answered[0] if answered else (time.time(), publisher.started)
    return Outage(killed_at, kill_seq, up_at, up_seq)


def _first_answer(port: int, publisher: Publisher) -> tuple[float, int]:
    """When Redis on ``port`` first answers PING, and the next message's number then.

    ``RedisServer.start()`` returns some milliseconds later (it also checks the
    server's identity); the streams may have resumed by then.
    """
    deadline = time.monotonic() + RESUME_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return time.time(), publisher.started
        except OSError:
            pass
        time.sleep(0.002)
    return time.time(), publisher.started


def _report_restart(
    number: int,
    outage: Outage,
    pool: ClientPool,
    publisher: Publisher,
    server: StreamServer,
    ledger: Ledger,
    started: float,
    streams: int,
) -> None:
    resumed = wait_until(
        lambda: pool.state("soak", outage.up_seq)["caught_up"] >= streams, RESUME_TIMEOUT, 0.1
    )
    state = pool.state("soak", outage.up_seq)
    sorted_out = classify(pool.jumps("soak"), list(publisher.acked_at), ledger.outages)
    index = len(ledger.outages) - 1
    # A stream may hear again a hair before the poller's PING returns: count that as 0.
    delays = [
        max(0.0, at - outage.up_at)
        for (_, k), at in sorted_out["first_after"].items()
        if k == index
    ]
    usage = server.usage()
    ledger.usages.append(usage)
    gaps = state["gaps"] - ledger.gaps_seen
    ledger.gaps_seen = state["gaps"]
    ledger.lost += sorted_out["lost"]
    ledger.restarts.append(
        {
            "resumed": state["caught_up"],
            "first_message_ms": {
                "p50": percentile(delays, 50) * 1e3,
                "p99": percentile(delays, 99) * 1e3,
                "max": max(delays, default=0) * 1e3,
                "measured": len(delays),
            },
            "gaps": gaps,
            "lost_outside_outages": sorted_out["lost"],
            "missed_while_resuming": sorted_out["resuming"],
            "failed_publishes": outage.failed_publishes(publisher.acked_at),
            "rss_kib": usage.rss_kib,
            "threads": usage.threads,
            "fds": usage.fds,
        }
    )
    if not resumed:
        ledger.failures.append(f"restart {number}: {streams - state['caught_up']} never resumed")
    if sorted_out["lost"]:
        ledger.failures.append(f"restart {number}: {sorted_out['lost']} lost outside outages")
    _say(
        started,
        f"restart {number}: {state['caught_up']}/{streams} resumed; Redis answering -> "
        f"first message p50 {percentile(delays, 50) * 1e3:.0f} ms, "
        f"p99 {percentile(delays, 99) * 1e3:.0f} ms, max {max(delays, default=0) * 1e3:.0f} ms "
        f"({len(delays)} measured); gaps {gaps}; lost outside outages {sorted_out['lost']}; "
        f"missed while resuming {sorted_out['resuming'] / streams:.1f} per stream; "
        f"publishes failed in the outage {outage.failed_publishes(publisher.acked_at)}; "
        f"RSS {usage.rss_kib / 1024:.1f} MiB, threads {usage.threads}, fds {usage.fds}",
    )


def _check_leaks(ledger: Ledger) -> None:
    if len(ledger.usages) < 2:
        return
    first, last = ledger.usages[0], ledger.usages[-1]
    if last.fds > first.fds + FD_SLACK or last.threads > first.threads + THREAD_SLACK:
        ledger.failures.append(
            f"leak: threads {first.threads} -> {last.threads}, fds {first.fds} -> {last.fds}"
        )
    if last.rss_kib > first.rss_kib * (1 + RSS_GROWTH_LIMIT):
        ledger.failures.append(f"leak: RSS {first.rss_kib} -> {last.rss_kib} KiB")


def _release(
    pool: ClientPool,
    redis_server: RedisServer,
    server: StreamServer,
    idle: Usage,
    ledger: Ledger,
    started: float,
) -> None:
    pool.drop("soak")
    released = wait_until(
        lambda: (
            redis_server.numsub(TOPIC) == 0
            and server.usage().threads <= idle.threads
            and server.usage().fds <= idle.fds + FD_SLACK
        ),
        RESUME_TIMEOUT,
        0.1,
    )
    usage = server.usage()
    numsub = redis_server.numsub(TOPIC)
    _say(
        started,
        f"clients gone: NUMSUB {numsub}, threads {usage.threads} (idle {idle.threads}), "
        f"fds {usage.fds} (idle {idle.fds}), RSS {usage.rss_kib / 1024:.1f} MiB",
    )
    if not released:
        ledger.failures.append(
            f"leak after the clients left: NUMSUB {numsub}, threads {usage.threads} "
            f"(idle {idle.threads}), fds {usage.fds} (idle {idle.fds})"
        )


def soak(options: argparse.Namespace) -> Ledger:
    environment.raise_fd_limit()
    ledger = Ledger()
    started = time.monotonic()
    secret_key = configure()
    path = stream_paths()["fast"]
    redis_server = RedisServer().start()
    server = StreamServer(redis_server, secret_key, options.flavour, options.backend)
    publisher = Publisher(redis_server, options.rate, options.backend)
    try:
        with server, ClientPool(1) as pool:
            # The idle reference: after one stream came and went (a first subscription
            # may start threads that outlive it).
            pool.open("warm", 1, server.port, path, timeout=30.0, concurrency=1)
            pool.drop("warm")
            wait_until(lambda: redis_server.numsub(TOPIC) == 0, RESUME_TIMEOUT)
            time.sleep(1.0)
            idle = server.usage()
            opened = pool.open(
                "soak", options.streams, server.port, path, timeout=60.0, concurrency=100
            )
            if opened["opened"] < options.streams:
                ledger.failures.append(f"only {opened['opened']} streams opened: {opened}")
                return ledger
            _say(
                started,
                f"{options.streams} streams open, {options.backend}; publishing at "
                f"{options.rate:g} msg/s; Redis killed every {options.period:g} s",
            )
            publisher.start()
            number = 0
            while (number + 1) * options.period < options.seconds:
                number += 1
                time.sleep(max(0.0, started + number * options.period - time.monotonic()))
                outage = _restart(redis_server, publisher)
                ledger.outages.append(outage)
                _report_restart(
                    number, outage, pool, publisher, server, ledger, started, options.streams
                )
            time.sleep(max(0.0, started + options.seconds - time.monotonic()))
            publisher.stop()
            time.sleep(1.0)  # The last messages reach the streams.
            tail = classify(pool.jumps("soak"), list(publisher.acked_at), ledger.outages)
            ledger.lost += tail["lost"]
            if tail["lost"]:
                ledger.failures.append(f"after the last restart: {tail['lost']} lost")
            _check_leaks(ledger)
            _release(pool, redis_server, server, idle, ledger, started)
    finally:
        publisher.stop()
        redis_server.stop()
    return ledger


def main(argv: list[str]) -> int:
    options = _parse(argv)
    print(f"Soak: {options.seconds:g} s, load average {os.getloadavg()[0]:.1f}", flush=True)
    ledger = soak(options)
    print(
        f"\n{len(ledger.outages)} restarts, {ledger.lost} messages lost outside the outages; "
        f"load average {os.getloadavg()[0]:.1f}."
    )
    for failure in ledger.failures:
        print(f"FAIL: {failure}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"options": vars(options), "restarts": ledger.restarts, "failures": ledger.failures}
    (RESULTS / "soak-latest.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"Saved {RESULTS / 'soak-latest.json'}.")
    print("PASS" if not ledger.failures else "FAILED")
    return 1 if ledger.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
