"""The streams-at-scale table: the fast path ("ours") beside the Django view ("baseline"),
with the targets of the fast path."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..report import Row

#: Targets of the fast path (issue 8).
MAX_STREAMS_TARGET = 20_000
THREADS_TARGET = 4
RSS_KB_TARGET = 12.0
OPENS_TARGET = 1000.0
P99_TARGET_MS = 1000.0
P99_TARGET_N = 10_000
STALL_RATIO_TARGET = 1.2
DRAIN_TARGET_S = 2.0
EXIT_TARGET_S = 5.0


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _seconds(value: float | None, limit: float) -> str:
    return f"> {limit:.0f} s" if value is None else f"{value:.2f} s"


def _kb(kib: float) -> float:
    return kib * 1.024


Cell = Callable[[dict[str, Any]], str]


def _cell(runs: dict[str, dict[str, Any]], kind: str, cell: Cell, why_missing: str) -> str:
    figures = runs.get(kind)
    if figures is None:
        return why_missing
    if "error" in figures:
        return str(figures["error"])
    return cell(figures)


def _rows_at(
    n: int, fast: dict[str, Any] | None, view: dict[str, Any] | None, view_missing: str
) -> list[Row]:
    runs = {kind: figures for kind, figures in (("fast", fast), ("view", view)) if figures}
    ok = fast is not None and "error" not in fast

    def row(
        title: str, cell: Cell, target: str = "", passed: Callable[[], bool] | None = None
    ) -> Row:
        ours = _cell(runs, "fast", cell, "not run")
        baseline = "view " + _cell(runs, "view", cell, view_missing)
        verdict = (passed() if ok else False) if passed is not None else None
        return Row(f"N={n:,}: {title}", ours, baseline, "", target, verdict)

    rows = [
        row(
            "open all (s; streams/s)",
            lambda f: f"{f['open']['seconds']:.1f} s; {f['opens_per_s']:,.0f}/s",
            f">= {OPENS_TARGET:,.0f}/s",
            lambda: fast is not None and fast["opens_per_s"] >= OPENS_TARGET,
        ),
        row(
            "threads above idle",
            lambda f: f"{f['threads_above_idle']} (idle {f['threads_idle']})",
            f"<= {THREADS_TARGET}",
            lambda: fast is not None and fast["threads_above_idle"] <= THREADS_TARGET,
        ),
        row(
            "RSS per stream (KB)",
            lambda f: _fmt(_kb(f["rss_kib_per_stream"]), 1),
            f"<= {RSS_KB_TARGET:.0f} KB",
            lambda: fast is not None and _kb(fast["rss_kib_per_stream"]) <= RSS_KB_TARGET,
        ),
        row("idle CPU (% of a core)", lambda f: _fmt(f["idle_cpu_percent"], 1, "%")),
        row(
            "server CPU per open (ms) / per delivery (us); clients' per delivery (us)",
            lambda f: (
                f"{_fmt(f.get('open_cpu_ms_per_stream'), 2)} / "
                f"{_fmt(f['delivery'].get('server_cpu_us_per_delivery'), 1)}; "
                f"{_fmt(f['delivery'].get('clients_cpu_us_per_delivery'), 1)}"
            ),
        ),
        row(
            "delivery p50 / p99 at 1 msg/s (ms)",
            lambda f: (
                f"{_fmt(f['delivery']['p50_ms'])} / {_fmt(f['delivery']['p99_ms'])}"
                + _lost(f["delivery"])
            ),
            f"p99 <= {P99_TARGET_MS:,.0f} ms" if n >= P99_TARGET_N else "",
            (lambda: fast is not None and _p99_ok(fast["delivery"])) if n >= P99_TARGET_N else None,
        ),
    ]
    if any("release" in figures for figures in runs.values()):
        rows.append(
            row(
                "release after hang-up: subscription / threads (s)",
                lambda f: (
                    f"{_seconds(f['release']['subscription_s'], 60)} / "
                    f"{_seconds(f['release']['threads_s'], 60)}"
                    if "release" in f
                    else "(drained instead)"
                ),
            )
        )
    if any("drain" in figures for figures in runs.values()):
        rows.append(
            row(
                "SIGTERM: all streams ended / process exited",
                lambda f: (
                    f"{_seconds(f['drain']['streams_ended_s'], 15)} / "
                    f"{_seconds(f['drain']['exit_s'], 15)}"
                    if "drain" in f
                    else "(released instead)"
                ),
                f"<= {DRAIN_TARGET_S:.0f} s / <= {EXIT_TARGET_S:.0f} s",
                (lambda: fast is not None and _drained(fast)) if fast and "drain" in fast else None,
            )
        )
    return rows


def _lost(delivery: dict[str, Any]) -> str:
    missing = delivery["expected"] - delivery["delivered"]
    return f" ({missing:,} undelivered)" if missing else ""


def _p99_ok(delivery: dict[str, Any]) -> bool:
    return bool(
        delivery["delivered"] >= delivery["expected"] and delivery["p99_ms"] <= P99_TARGET_MS
    )


def _drained(fast: dict[str, Any]) -> bool:
    drain = fast["drain"]
    ended, exited = drain["streams_ended_s"], drain["exit_s"]
    return (
        ended is not None
        and ended <= DRAIN_TARGET_S
        and exited is not None
        and exited <= EXIT_TARGET_S
    )


def _stall_rows(stall: dict[str, dict[str, Any]]) -> list[Row]:
    fast, view = stall.get("fast"), stall.get("view")

    def cell(figures: dict[str, Any] | None) -> str:
        if figures is None:
            return "not run"
        if "error" in figures:
            return str(figures["error"])
        held = figures.get("rss_kib_per_stalled_at_hang_up")
        return (
            f"{_fmt(figures['without']['p99_ms'])} -> {_fmt(figures['with']['p99_ms'])} ms "
            f"({figures['p99_ratio']:.2f}x){_lost(figures['with'])}; "
            f"{_fmt(None if held is None else _kb(held))} KB RSS per stalled client"
        )

    shape = next((f for f in (fast, view) if f and "error" not in f), None)
    title = "healthy p99 without -> with stalled clients"
    if shape is not None:
        title = (
            f"{shape['healthy']:,} healthy: p99 without -> with {shape['stalled']} stalled "
            f"({shape['payload_bytes'] // 1024} KiB at {shape['rate']:g} msg/s)"
        )
    ok = fast is not None and "error" not in fast
    return [
        Row(
            title,
            cell(fast),
            "view " + cell(view),
            "",
            f"<= {STALL_RATIO_TARGET:.1f}x",
            ok
            and fast is not None
            and fast["p99_ratio"] <= STALL_RATIO_TARGET
            and fast["with"]["delivered"] >= fast["with"]["expected"],
        )
    ]


def _mean(runs: list[dict[str, Any]], figure: Callable[[dict[str, Any]], float]) -> float:
    return sum(map(figure, runs)) / len(runs)


#: The flavour comparison's figures: (title, figure of a run, digits).
FLAVOUR_FIGURES: tuple[tuple[str, Callable[[dict[str, Any]], float], int], ...] = (
    ("opens/s", lambda f: f["opens_per_s"], 0),
    ("server CPU per open (ms)", lambda f: f["open_cpu_ms_per_stream"], 2),
    ("delivery p99 (ms)", lambda f: f["delivery"]["p99_ms"], 0),
    ("server CPU per delivery (us)", lambda f: f["delivery"]["server_cpu_us_per_delivery"], 1),
    ("RSS per stream (KB)", lambda f: _kb(f["rss_kib_per_stream"]), 1),
)


def _flavour_rows(flavours: dict[str, list[dict[str, Any]]]) -> list[Row]:
    """uvicorn[standard] (uvloop, httptools) beside plain uvicorn (asyncio, h11)."""
    plain, standard = flavours.get("asyncio", []), flavours.get("uvloop", [])
    if any("error" in f for f in plain + standard) or not plain or not standard:
        return []
    n = plain[0]["n"]
    rows = []
    for title, figure, digits in FLAVOUR_FIGURES:
        ours, theirs = _mean(standard, figure), _mean(plain, figure)
        rows.append(
            Row(
                f"N={n:,}, uvicorn[standard] vs plain uvicorn, mean of 2 (ABBA): {title}",
                f"uvloop+httptools {_fmt(ours, digits)}",
                f"asyncio+h11 {_fmt(theirs, digits)}",
                f"{ours / theirs:.2f}x" if theirs else "",
            )
        )
    return rows


def _floor_rows(floor: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[Row]:
    """uvicorn alone beside the fast path at the same N: the part of a stream's cost
    that is the server's own."""
    if "error" in floor:
        return [Row("uvicorn alone (open responses)", floor["error"], "")]
    n = floor["n"]
    fast = runs.get(f"fast-{n}")
    ours = "n/a" if fast is None or "error" in fast else f"{_kb(fast['rss_kib_per_stream']):.1f}"
    return [
        Row(
            f"N={n:,}: RSS per stream (KB), fast path vs uvicorn alone (no subscription)",
            ours,
            f"uvicorn alone {_kb(floor['rss_kib_per_stream']):.1f} "
            f"(opens {floor['opens_per_s']:,.0f}/s, "
            f"{floor['open_cpu_ms_per_stream']:.2f} ms CPU each)",
        )
    ]


def _capacity_rows(results: dict[str, Any]) -> list[Row]:
    """Whether the largest run held its streams; below the target only when this
    machine's open-files limit made the target impossible to run."""
    largest = max(results["counts"], default=0)
    cap = results.get("streams_cap", MAX_STREAMS_TARGET)
    if largest < min(MAX_STREAMS_TARGET, cap):
        return []
    fast = results["runs"].get(f"fast-{largest}")
    held = fast is not None and "error" not in fast
    cell = f"{largest:,} held" if held else (fast or {}).get("error", "not run")
    verdict: bool | None = held
    if largest < MAX_STREAMS_TARGET:
        cell += f" (the most one process may open here: hard RLIMIT_NOFILE allows {cap:,})"
        verdict = None if held else False
    return [Row("streams in one process", cell, "", "", f"{MAX_STREAMS_TARGET:,}", verdict)]


def rows(results: dict[str, Any]) -> list[Row]:
    table: list[Row] = []
    view_cap = results["view_max"]
    for n in results["counts"]:
        fast = results["runs"].get(f"fast-{n}")
        view = results["runs"].get(f"view-{n}")
        missing = f"skipped (N > {view_cap:,}, see docs)" if n > view_cap else "not run"
        table += _rows_at(n, fast, view, missing)
    table += _capacity_rows(results)
    if results.get("floor"):
        table += _floor_rows(results["floor"], results["runs"])
    if results.get("stall"):
        table += _stall_rows(results["stall"])
    if results.get("flavours"):
        table += _flavour_rows(results["flavours"])
    return table
