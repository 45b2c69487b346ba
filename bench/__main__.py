"""``python -m bench``: measure the Redis engine against redis-py and the naive baseline,
and the sharded and streams backends against their raw Redis commands.

Every measurement talks to one private redis-server on a free loopback port, started
here and stopped at the end; the sharded section also starts (and stops) a private local
Redis Cluster and compares it with that server. Prints a table with each target's
PASS/FAIL and saves the figures to ``bench/results/<UTC timestamp>.json`` and
``bench/results/latest.json`` (plus ``latest.md``, the table in Markdown). Exits 0
whether targets pass or fail; 1 if a measurement could not be made.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis

from localservers import RedisServer

from . import closing, environment, fanout, latency, publish, report, resources, sharded, streams

SECTIONS = ("publish", "fanout", "latency", "resources", "close", "sharded", "streams")

#: Sizes of a full run; ``--quick`` divides the counts to check that everything works.
FULL: dict[str, Any] = {
    "publish_messages": 200,
    "publish_rounds": 100,
    # (subscribers, messages per burst, rounds)
    "fanout": [(1, 20_000, 3), (100, 2000, 3), (1000, 200, 5)],
    "latency_samples": 3000,
    "subscriptions": 1000,
    "topics": 100,
    "close_samples": 50,
    "naive_close_samples": 10,
    "sharded": {
        "topics": 48,
        "subscribers": 20,
        "messages": 500,
        "publish_messages": 200,
        "publish_rounds": 50,
        "fanout_rounds": 3,
    },
    "streams": {
        "publish_messages": 200,
        "publish_rounds": 50,
        "replay_messages": 100_000,
        "replay_rounds": 3,
    },
}
QUICK: dict[str, Any] = {
    **FULL,
    "publish_messages": 100,
    "publish_rounds": 5,
    "fanout": [(1, 2000, 1), (100, 200, 1), (1000, 20, 1)],
    "latency_samples": 300,
    "close_samples": 10,
    "naive_close_samples": 2,
    "sharded": {
        "topics": 12,
        "subscribers": 5,
        "messages": 50,
        "publish_messages": 100,
        "publish_rounds": 3,
        "fanout_rounds": 1,
    },
    "streams": {
        "publish_messages": 100,
        "publish_rounds": 3,
        "replay_messages": 5000,
        "replay_rounds": 1,
    },
}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="Small counts: check the harness, not the figures."
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="Run only these measurements.",
    )
    return parser.parse_args(argv)


def _progress(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


class Step(NamedTuple):
    """One measurement: its ``--only`` section, its progress title, where its figures go
    in the results (``(key,)``, or ``(key, "+")`` to append to a list) and the call."""

    section: str
    title: str
    key: tuple[str, ...]
    run: Callable[[], Any]


def _steps(server: RedisServer, client: redis.Redis, sizes: dict[str, Any]) -> list[Step]:
    steps = [
        Step(
            "publish",
            "CPU time added per publish",
            ("publish_overhead_us",),
            lambda: publish.overhead_us(client),
        )
    ]
    steps += [
        Step(
            "publish",
            f"publish throughput, {threads} thread(s)",
            ("publish", "+"),
            functools.partial(
                publish.measure,
                client,
                threads=threads,
                messages=sizes["publish_messages"],
                rounds=sizes["publish_rounds"],
            ),
        )
        for threads in (1, 4)
    ]
    steps += [
        Step(
            "fanout",
            f"fan-out to {subscribers} subscriber(s), {rounds} x {messages} messages",
            ("fanout", "+"),
            functools.partial(
                fanout.measure,
                server,
                client,
                subscribers=subscribers,
                messages=messages,
                rounds=rounds,
            ),
        )
        for subscribers, messages, rounds in sizes["fanout"]
    ]
    return [
        *steps,
        Step(
            "latency",
            "publish->receive latency",
            ("latency",),
            lambda: latency.measure(server, client, samples=sizes["latency_samples"]),
        ),
        Step(
            "resources",
            f"resources at {sizes['subscriptions']} subscriptions",
            ("resources",),
            lambda: resources.measure(
                server, client, subscriptions=sizes["subscriptions"], topics=sizes["topics"]
            ),
        ),
        Step(
            "close",
            "close() latency",
            ("close",),
            lambda: closing.measure(
                server,
                client,
                samples=sizes["close_samples"],
                naive_samples=sizes["naive_close_samples"],
            ),
        ),
        Step(
            "sharded",
            "sharded Pub/Sub: local cluster vs one server",
            ("sharded",),
            lambda: sharded.measure(server, **sizes["sharded"]),
        ),
        Step(
            "streams",
            "streams: publish, and replay from a cursor",
            ("streams",),
            lambda: streams.measure(client, **sizes["streams"]),
        ),
    ]


def _store(results: dict[str, Any], key: tuple[str, ...], figures: Any) -> None:
    if key[1:] == ("+",):
        results.setdefault(key[0], []).append(figures)
    else:
        results[key[0]] = figures


def _run(options: argparse.Namespace, sizes: dict[str, Any]) -> dict[str, Any]:
    fd_soft, fd_hard = environment.raise_fd_limit()
    server = environment.start_redis()
    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": options.quick,
        "sizes": sizes,
        "machine": environment.machine(server) | {"open_files_limit": [fd_soft, fd_hard]},
    }
    client = server.client()
    try:
        for step in _steps(server, client, sizes):
            if step.section not in options.only:
                continue
            _progress(started, step.title)
            _store(results, step.key, step.run())
            environment.settle()
    finally:
        client.close()
        server.stop()
    results["duration_s"] = time.monotonic() - started
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    return results


def main(argv: list[str]) -> int:
    options = _parse(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = _run(options, QUICK if options.quick else FULL)
    table = report.rows(results)
    machine = results["machine"]
    print(
        f"\nbroadcast_app benchmark, {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, redis-py {machine['redis_py']}, "
        f"hiredis {machine['hiredis']}, {machine['redis_server']}; "
        f"load average {machine['load_average_at_start'][0]:.1f} at start, "
        f"{machine['load_average_at_end'][0]:.1f} at end; {results['duration_s']:.0f} s.\n"
    )
    print(report.text_table(table))
    verdicts = [row.passed for row in table if row.passed is not None]
    if verdicts:
        print(f"\n{sum(verdicts)} of {len(verdicts)} targets met.")
    if options.quick:
        print("A --quick run checks the harness; its figures are not representative.")
    path = report.save(results, table, stamp)
    print(f"Saved {path} and {path.parent / 'latest.json'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
