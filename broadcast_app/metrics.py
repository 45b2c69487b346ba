"""Prometheus metrics of the broadcast channels, through ``prometheus_client``.

Installed with the ``prometheus`` extra; when ``prometheus_client`` is importable the
app registers ``BroadcastCollector`` with its default registry at start-up, so
``/metrics`` (``django-prometheus``, or ``prometheus_client``'s own exporters) shows:

- gauges ``broadcast_app_subscriptions`` and ``broadcast_app_streams`` (open SSE
  streams of this process);
- counters ``broadcast_app_messages_published_total``,
  ``broadcast_app_messages_delivered_total``, ``broadcast_app_messages_dropped_total``,
  ``broadcast_app_gaps_total`` and ``broadcast_app_reconnects_total``;

each labelled ``channel`` with the alias, for every channel this process has built.
The figures are read from ``channel.stats()`` when scraped: nothing is added to the
publish or delivery paths.

Several processes (gunicorn, uvicorn ``--workers``): with ``prometheus_client``'s
multi-process mode (``PROMETHEUS_MULTIPROC_DIR`` set in every process), a scrape reads
the files the processes write, not their collectors; each process then mirrors its
figures into multi-process metrics every ``MIRROR_INTERVAL`` seconds from a daemon
thread (gauges summed over live processes, counters over all), so the scrape of any
worker shows the sum.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .conf import channels
from .streaming import streams

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

#: ``stats()`` key -> (metric name without the ``_total`` suffix, kind, help text).
METRICS: dict[str, tuple[str, str, str]] = {
    "subscriptions": (
        "broadcast_app_subscriptions",
        "gauge",
        "Live subscriptions of this process.",
    ),
    "streams": (
        "broadcast_app_streams",
        "gauge",
        "Open Server-Sent Events streams of this process.",
    ),
    "messages_published_total": (
        "broadcast_app_messages_published",
        "counter",
        "Messages published by this process.",
    ),
    "messages_delivered_total": (
        "broadcast_app_messages_delivered",
        "counter",
        "Messages handed to subscriptions of this process (one per subscription).",
    ),
    "messages_dropped_total": (
        "broadcast_app_messages_dropped",
        "counter",
        "Messages dropped because a subscriber fell too far behind.",
    ),
    "gaps_total": (
        "broadcast_app_gaps",
        "counter",
        "Times a subscription may have missed messages (overflow or outage).",
    ),
    "reconnects_total": (
        "broadcast_app_reconnects",
        "counter",
        "Times a channel reconnected to its server after losing it.",
    ),
}


def channel_stats() -> dict[str, dict[str, int]]:
    """``stats()`` of every channel this process has built, with its open streams."""
    return {
        alias: {**channel.stats(), "streams": streams.count(alias)}
        for alias, channel in channels.built().items()
    }


class BroadcastCollector:
    """A ``prometheus_client`` collector reading ``channel_stats()`` when scraped."""

    def describe(self) -> Iterable[Any]:
        """The metric families, without figures: what ``register()`` checks for clashes."""
        return self._families({})

    def collect(self) -> Iterable[Any]:
        """The metric families with the current figures, labelled by channel alias."""
        return self._families(channel_stats())

    @staticmethod
    def _families(figures: dict[str, dict[str, int]]) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415 (an optional dependency)
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        for key, (name, kind, documentation) in METRICS.items():
            family_type = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            family = family_type(name, documentation, labels=["channel"])
            for alias, stats in sorted(figures.items()):
                family.add_metric([alias], stats.get(key, 0))
            yield family


#: Seconds between two copies of the figures into multi-process metrics.
MIRROR_INTERVAL = 5.0


class MultiProcessMirror:
    """Copies ``channel_stats()`` into ``prometheus_client`` multi-process metrics.

    ``copy()`` is the whole job; ``start()`` runs it every ``interval`` seconds in a
    daemon thread of this process, and again in a child after a fork (a server that
    loads the app before forking its workers).
    """

    def __init__(self, interval: float = MIRROR_INTERVAL) -> None:
        from prometheus_client import Counter, Gauge  # noqa: PLC0415 (an optional dependency)

        self.interval = interval
        self._gauges = {
            key: Gauge(name, documentation, ["channel"], multiprocess_mode="livesum")
            for key, (name, kind, documentation) in METRICS.items()
            if kind == "gauge"
        }
        self._counters = {
            key: Counter(name, documentation, ["channel"])
            for key, (name, kind, documentation) in METRICS.items()
            if kind == "counter"
        }
        self._copied: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forked)

    def copy(self) -> None:
        """Copy the figures of every channel built so far. Thread-safe."""
        with self._lock:
            for alias, stats in channel_stats().items():
                for key, gauge in self._gauges.items():
                    gauge.labels(alias).set(stats.get(key, 0))
                for key, counter in self._counters.items():
                    value = stats.get(key, 0)
                    # A channel rebuilt (settings changed) counts from zero again.
                    delta = value - self._copied.get((alias, key), 0)
                    if delta > 0:
                        counter.labels(alias).inc(delta)
                    self._copied[(alias, key)] = value

    def start(self) -> None:
        """Start the copying thread, unless it runs already. Does not block."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="broadcast_app-metrics", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End the thread (it otherwise lives as long as the process)."""
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.copy()

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._copied.clear()
        if self._thread is not None:
            self._thread = None
            self.start()


_registered: set[int] = set()
_mirror: MultiProcessMirror | None = None


def register(registry: CollectorRegistry | None = None) -> bool:
    """Export the figures to ``registry`` (default: prometheus_client's), once per
    registry; in multi-process mode, start mirroring them into multi-process metrics
    instead. Return False when ``prometheus_client`` is not installed."""
    global _mirror  # noqa: PLW0603 (one mirror per process)
    try:
        from prometheus_client import REGISTRY  # noqa: PLC0415 (an optional dependency)
    except ImportError:
        return False
    if registry is None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        if _mirror is None:
            _mirror = MultiProcessMirror()
            _mirror.start()
        return True
    target = REGISTRY if registry is None else registry
    if id(target) not in _registered:
        target.register(BroadcastCollector())
        _registered.add(id(target))
    return True
