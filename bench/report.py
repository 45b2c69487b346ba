"""Turn the measurements into rows with targets, print them, and save them as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One line of the table; ``passed`` is None for a figure without a target."""

    measurement: str
    ours: str
    baseline: str
    comparison: str = ""
    target: str = ""
    passed: bool | None = None

    @property
    def result(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "FAIL")


HEADERS = ("measurement", "ours", "baseline", "ours vs baseline", "target", "result")


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:,.0f}"


def _ratio_cell(figures: dict[str, Any]) -> str:
    """The median per-round ratio of a ``publish.compare`` measurement, with its IQR."""
    low, high = figures["ratio_iqr"]
    return f"{figures['ratio']:.2f}x (IQR {low:.2f}-{high:.2f})"


def _publish_rows(publish: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for figures in publish:
        plural = "s" if figures["threads"] > 1 else ""
        rows.append(
            Row(
                f"publish, {figures['threads']} thread{plural} (msg/s)",
                _number(figures["ours_msg_per_s"]),
                f"redis-py {_number(figures['raw_msg_per_s'])}",
                _ratio_cell(figures),
                ">= 0.95x redis-py",
                figures["ratio"] >= 0.95,
            )
        )
    return rows


def _rate_cell(figures: dict[str, Any]) -> str:
    rates = figures["rates"]
    spread = f" [{_number(min(rates))}-{_number(max(rates))}]" if len(rates) > 1 else ""
    return f"{_number(figures['msg_per_s'])}{spread}, lost {figures['losses']:,}"


def _fanout_rows(fanout: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for figures in fanout:
        subscribers = figures["subscribers"]
        naive = figures["naive"]
        for side, label in (("ours_threads", "a thread each"), ("ours_async", "asyncio tasks")):
            ours = figures[side]
            ratio = ours["msg_per_s"] / naive["msg_per_s"]
            targeted = subscribers == 1000
            rows.append(
                Row(
                    f"fan-out to {subscribers:,}, consumers {label} (deliveries/s)",
                    _rate_cell(ours),
                    f"naive {_rate_cell(naive)}",
                    f"{ratio:.1f}x",
                    ">= 5x naive" if targeted else "",
                    ratio >= 5 if targeted else None,
                )
            )
    return rows


def _latency_rows(latency: dict[str, Any]) -> list[Row]:
    raw, ours, naive = latency["raw"], latency["ours"], latency["naive"]
    excess = latency["p99_excess_ms"]
    return [
        Row(
            "publish->receive latency p50 (ms)",
            _ms(ours["p50_ms"]),
            f"redis-py {_ms(raw['p50_ms'])}, naive {_ms(naive['p50_ms'])}",
            f"{latency['p50_excess_ms'] * 1e3:+.0f} us",
        ),
        Row(
            "publish->receive latency p99 (ms)",
            _ms(ours["p99_ms"]),
            f"redis-py {_ms(raw['p99_ms'])}, naive {_ms(naive['p99_ms'])}",
            f"{excess * 1e3:+.0f} us",
            "<= redis-py + 0.5 ms",
            excess <= 0.5,
        ),
    ]


def _resource_rows(resources: dict[str, Any]) -> list[Row]:
    ours, naive = resources["ours"], resources["naive"]
    count = f"{resources['subscriptions']:,} subs on {resources['topics']} topics"
    return [
        Row(
            f"Redis connections, {count}",
            _number(ours["redis_connections"]),
            "naive " + _number(naive["redis_connections"]),
        ),
        Row(f"threads, {count}", _number(ours["threads"]), "naive " + _number(naive["threads"])),
        Row(
            f"open file descriptors, {count}",
            _number(ours["fds"]),
            "naive " + _number(naive["fds"]),
        ),
        Row(
            f"Python heap held (KiB), {count}",
            _number(ours["python_heap_kib"]),
            "naive " + _number(naive["python_heap_kib"]) + " (+1,000 thread stacks)",
        ),
        Row(
            f"open all, {count} (s)",
            _number(ours["open_all_s"], 3),
            "naive " + _number(naive["open_all_s"], 3),
        ),
        Row(
            f"close all, {count} (s)",
            _number(ours["close_all_s"], 3),
            "naive " + _number(naive["close_all_s"], 3) + " (stopped together)",
        ),
    ]


def _close_rows(closing: dict[str, Any]) -> list[Row]:
    ours, naive = closing["ours"], closing["naive"]
    rows = []
    for key, label in (
        ("return_ms", "close() returns"),
        ("wake_ms", "close() wakes a consumer blocked in receive(None)"),
    ):
        worst = ours[key]["max"]
        rows.append(
            Row(
                f"{label}, p50 / max (ms)",
                f"{_ms(ours[key]['p50'])} / {_ms(worst)}",
                f"naive {_ms(naive[key]['p50'])} / {_ms(naive[key]['max'])}",
                f"{naive[key]['p50'] / ours[key]['p50']:,.0f}x faster (p50)",
                "< 10 ms (max)",
                worst < 10,
            )
        )
    crowded = closing.get("crowded")
    if crowded is not None:
        rows.append(
            Row(
                f"subscribe + close among {crowded['others']:,} of a topic (us)",
                _number(crowded["among_us"], 1),
                f"alone {_number(crowded['alone_us'], 1)}",
                f"{crowded['among_us'] / crowded['alone_us']:.2f}x alone",
                "< 2x alone",
                crowded["among_us"] < 2 * crowded["alone_us"],
            )
        )
    rows.append(
        Row(
            "close() until PUBSUB NUMSUB is 0, p50 / max (ms)",
            f"{_ms(ours['numsub_zero_ms']['p50'])} / {_ms(ours['numsub_zero_ms']['max'])}",
            f"naive {_ms(naive['numsub_zero_ms']['p50'])} / {_ms(naive['numsub_zero_ms']['max'])}",
        )
    )
    return rows


def _sharded_rows(sharded: dict[str, Any]) -> list[Row]:
    cluster, single = sharded["cluster"], sharded["single"]
    versus = f"{cluster['primaries']}-primary cluster vs 1 server"
    shape = f"{sharded['topics']} topics x {sharded['subscribers_per_topic']} subs"

    def publish_cell(target: dict[str, Any]) -> str:
        figures = target["publish"]
        return f"{_number(figures['ours_msg_per_s'])} ({figures['ratio']:.2f}x raw SPUBLISH)"

    busiest = [target["fanout"]["redis_cpu_s_busiest_node"] for target in (cluster, single)]
    return [
        Row(
            f"sharded publish, 1 thread, {versus} (msg/s)",
            publish_cell(cluster),
            f"1 server {publish_cell(single)}",
            f"{cluster['publish']['ours_msg_per_s'] / single['publish']['ours_msg_per_s']:.2f}x",
        ),
        Row(
            f"sharded fan-out, {shape}, asyncio, {versus} (deliveries/s)",
            _rate_cell(cluster["fanout"]),
            f"1 server {_rate_cell(single['fanout'])}",
            f"{cluster['fanout']['msg_per_s'] / single['fanout']['msg_per_s']:.2f}x",
        ),
        Row(
            "sharded fan-out: Redis CPU s per burst, busiest node (all nodes)",
            f"{busiest[0]:.3f} ({cluster['fanout']['redis_cpu_s_total']:.3f})",
            f"1 server {busiest[1]:.3f}",
            f"{busiest[0] / max(busiest[1], 1e-9):.2f}x",
        ),
    ]


def _streams_rows(streams: dict[str, Any]) -> list[Row]:
    publish, replay = streams["publish"], streams["replay"]
    raw = replay["raw_xrange"]["msg_per_s"]
    rows = [
        Row(
            "streams publish, 1 thread (msg/s)",
            _number(publish["ours_msg_per_s"]),
            f"raw XADD {_number(publish['raw_msg_per_s'])}",
            _ratio_cell(publish),
        )
    ]
    for side, label in (("ours_sync", "receive_with_cursor()"), ("ours_async", "asyncio")):
        ours = replay[side]["msg_per_s"]
        rows.append(
            Row(
                f"streams replay of {replay['messages']:,} from a cursor, {label} (msg/s)",
                _number(ours),
                f"raw XRANGE loop {_number(raw)}",
                f"{ours / raw:.2f}x",
            )
        )
    return rows


#: The rows of each section of the results, in the order of the table.
SECTION_ROWS: tuple[tuple[str, Callable[[Any], list[Row]]], ...] = (
    ("publish", _publish_rows),
    ("fanout", _fanout_rows),
    ("latency", _latency_rows),
    ("resources", _resource_rows),
    ("close", _close_rows),
    ("sharded", _sharded_rows),
    ("streams", _streams_rows),
)


def rows(results: dict[str, Any]) -> list[Row]:
    """The table of whatever sections ``results`` holds."""
    table: list[Row] = []
    if "publish_overhead_us" in results:
        table.append(
            Row(
                "CPU time publish() adds to redis-py's (us per call, no network)",
                f"{results['publish_overhead_us']:.2f}",
                "",
            )
        )
    for section, section_rows in SECTION_ROWS:
        if section in results:
            table += section_rows(results[section])
    return table


def _cells(row: Row) -> tuple[str, ...]:
    return (row.measurement, row.ours, row.baseline, row.comparison, row.target, row.result)


def text_table(table: list[Row]) -> str:
    lines = [HEADERS, *map(_cells, table)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(HEADERS))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def markdown_table(table: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in table]
    return "\n".join(lines)


def save(results: dict[str, Any], table: list[Row], stamp: str, prefix: str = "") -> Path:
    """Write ``<prefix><stamp>.json``, ``<prefix>latest.json`` and ``<prefix>latest.md``;
    return the first."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {**results, "table": [asdict(row) | {"result": row.result} for row in table]}
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    path = RESULTS / f"{prefix}{stamp}.json"
    path.write_text(text)
    (RESULTS / f"{prefix}latest.json").write_text(text)
    (RESULTS / f"{prefix}latest.md").write_text(markdown_table(table) + "\n")
    return path
