"""``python -m bench.sse``: browser streams at scale, the fast path beside the Django view.

For each N, each path gets a fresh uvicorn worker (testproject, one private
redis-server for the run) and N SSE streams opened by client processes on loopback, all
on one topic. Read from the server's /proc: threads above idle, RSS per stream, idle
CPU; from the clients: the time to open all, and the delivery latency of a broadcast at
1 msg/s. Then the clients hang up (release time), or at the drain N the server gets
SIGTERM (drain time). A last run per path measures healthy streams beside stalled ones.

The view opens ~80 streams/s, so by default it is measured up to N=5,000 only
(``--view-max``): 10,000 would take over two minutes and 10,000 threads per run.
Prints the table with the fast path's targets and saves it to
``bench/results/streams-latest.{json,md}``. Exits 0 whether targets pass or fail; 1 if
a measurement could not be made.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from localservers import RedisServer

from .. import environment
from ..report import save, text_table
from . import measure, report
from .clients import FDS_WANTED
from .loadgen import ClientPool
from .measure import Plan
from .paths import configure, stream_paths

FULL_COUNTS = [1000, 5000, 10_000, 20_000]
#: Descriptors a server needs besides its streams (listening socket, Redis, logs...).
FDS_RESERVED = 64
QUICK_COUNTS = [200, 1000]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="Small counts: check the harness.")
    parser.add_argument(
        "--counts",
        type=int,
        nargs="+",
        help="Stream counts N (default: 1,000 5,000 10,000 20,000; with --quick 200 1,000).",
    )
    parser.add_argument("--paths", nargs="+", choices=("fast", "view"), default=["fast", "view"])
    parser.add_argument(
        "--view-max", type=int, default=5000, help="Largest N the Django view is measured at."
    )
    parser.add_argument(
        "--drain-n",
        type=int,
        default=10_000,
        help="N at which SIGTERM is measured (each path: its largest N up to it).",
    )
    parser.add_argument("--messages", type=int, help="Messages broadcast per N, at 1 msg/s.")
    parser.add_argument("--no-stall", action="store_true", help="Skip the stalled-clients run.")
    parser.add_argument(
        "--flavours",
        nargs="+",
        choices=("asyncio", "uvloop"),
        default=["asyncio", "uvloop"],
        help="uvicorn flavours: the first serves every run; with two, both also serve "
        "the fast path at --compare-n, twice each (ABBA).",
    )
    parser.add_argument("--compare-n", type=int, default=5000)
    parser.add_argument(
        "--floor-n",
        type=int,
        default=10_000,
        help="N of uvicorn alone holding open responses (0: not measured).",
    )
    parser.add_argument("--client-processes", type=int, default=2)
    return parser.parse_args(argv)


def _plan(options: argparse.Namespace) -> tuple[Plan, list[int]]:
    plan = Plan()
    counts = options.counts or (QUICK_COUNTS if options.quick else FULL_COUNTS)
    if options.quick:
        plan.messages, plan.idle_window = 3, 2.0
        plan.stall_healthy, plan.stalled, plan.stall_seconds = 200, 20, 4.0
    if options.messages:
        plan.messages = options.messages
    plan.flavour = options.flavours[0]
    plan.paths = stream_paths()
    return plan, sorted({min(n, streams_cap()) for n in counts})


def streams_cap() -> int:
    """The most streams one server process can hold: its open-files limit (raised as far
    as the hard limit allows) less what it needs besides."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = FDS_WANTED if hard == resource.RLIM_INFINITY else min(FDS_WANTED, hard)
    return limit - FDS_RESERVED


def _progress(started: float, message: str) -> None:
    load = os.getloadavg()[0]
    print(
        f"[{time.monotonic() - started:6.1f} s, load {load:.1f}] {message}",
        file=sys.stderr,
        flush=True,
    )


def _schedule(options: argparse.Namespace, counts: list[int]) -> list[tuple[str, int, bool]]:
    """(path, N, drain?) for every run, the two paths side by side at each N."""
    runs = []
    for kind in options.paths:
        mine = [n for n in counts if kind == "fast" or n <= options.view_max]
        drain_at = max((n for n in mine if n <= options.drain_n), default=None)
        runs += [(kind, n, n == drain_at) for n in mine]
    return sorted(runs, key=lambda run: (run[1], run[0]))


def _run(options: argparse.Namespace) -> dict[str, Any]:
    environment.raise_fd_limit()
    secret_key = configure()
    plan, counts = _plan(options)
    flavours = [f for f in options.flavours if f == "asyncio" or importlib.util.find_spec(f)]
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": counts,
        "streams_cap": streams_cap(),
        "view_max": options.view_max,
        "plan": {key: value for key, value in vars(plan).items() if key != "paths"},
        "runs": {},
        "stall": {},
        "flavours": {},
    }
    started = time.monotonic()
    redis_server = environment.start_redis()
    results["machine"] = environment.machine(redis_server)
    try:
        with ClientPool(options.client_processes) as pool:
            for kind, n, drain in _schedule(options, counts):
                _progress(
                    started, f"{kind} path, {n:,} streams" + (", then SIGTERM" if drain else "")
                )
                figures = measure.streams_at(redis_server, pool, plan, kind, n, secret_key, drain)
                results["runs"][f"{kind}-{n}"] = figures
                _progress(started, f"  {_summary(figures)}")
            if options.floor_n:
                _progress(started, f"uvicorn alone, {options.floor_n:,} open responses")
                results["floor"] = measure.floor(
                    redis_server, pool, plan, min(options.floor_n, streams_cap()), secret_key
                )
            if not options.no_stall:
                for kind in options.paths:
                    _progress(started, f"{kind} path, stalled clients")
                    results["stall"][kind] = measure.stalled(
                        redis_server, pool, plan, kind, secret_key
                    )
            if len(flavours) == 2 and "fast" in options.paths:
                results["flavours"] = _compare_flavours(
                    redis_server, pool, plan, flavours, options.compare_n, secret_key, started
                )
    finally:
        redis_server.stop()
    results["duration_s"] = time.monotonic() - started
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["flavours_missing"] = sorted(set(options.flavours) - set(flavours))
    return results


def _compare_flavours(
    redis_server: RedisServer,
    pool: ClientPool,
    plan: Plan,
    flavours: list[str],
    n: int,
    secret_key: str,
    started: float,
) -> dict[str, list[dict[str, Any]]]:
    """The fast path at ``n`` on each uvicorn flavour, in ABBA order, so that a change
    in the machine's load during the comparison weighs on both sides alike."""
    compared: dict[str, list[dict[str, Any]]] = {flavour: [] for flavour in flavours}
    first, second = flavours
    for flavour in (first, second, second, first):
        _progress(started, f"fast path on uvicorn {flavour}, {n:,} streams")
        figures = measure.streams_at(
            redis_server, pool, replace(plan, flavour=flavour), "fast", n, secret_key, False
        )
        compared[flavour].append(figures)
        _progress(started, f"  {_summary(figures)}")
    return compared


def _summary(figures: dict[str, Any]) -> str:
    if "error" in figures:
        return f"error: {figures['error']}"
    delivery = figures["delivery"]
    return (
        f"opened in {figures['open']['seconds']:.1f} s, threads +{figures['threads_above_idle']}, "
        f"{figures['rss_kib_per_stream']:.1f} KiB/stream, p99 {delivery['p99_ms']:.0f} ms, "
        f"{figures.get('release') or figures.get('drain')}"
    )


def main(argv: list[str]) -> int:
    options = _parse(argv)
    results = _run(options)
    table = report.rows(results)
    machine = results["machine"]
    print(
        f"\nStreams at scale: the fast path (with_streams) and the view; one uvicorn worker "
        f"({results['plan']['flavour']}), Redis Pub/Sub; {machine['cpus']} CPUs "
        f"({machine['cpu_model']}), Python {machine['python']}, {machine['redis_server']}; "
        f"load average {machine['load_average_at_start'][0]:.1f} at start, "
        f"{machine['load_average_at_end'][0]:.1f} at end; {results['duration_s']:.0f} s.\n"
    )
    print(text_table(table))
    verdicts = [row.passed for row in table if row.passed is not None]
    print(f"\n{sum(verdicts)} of {len(verdicts)} targets met.")
    if results["flavours_missing"]:
        print(f"Not installed, not compared: {', '.join(results['flavours_missing'])}.")
    if options.quick:
        print("A --quick run checks the harness; its figures are not representative.")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = save(results, table, stamp, prefix="streams-")
    print(f"Saved {path}.")
    errors = [f for f in results["runs"].values() if "error" in f]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
