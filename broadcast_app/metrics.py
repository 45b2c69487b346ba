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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .conf import channels

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

#: ``alias -> open streams``; set by the stream layer.
open_streams: Callable[[str], int] = lambda alias: 0  # noqa: E731


def channel_stats() -> dict[str, dict[str, int]]:
    """``stats()`` of every channel this process has built, with its open streams."""
    return {
        alias: {**channel.stats(), "streams": open_streams(alias)}
        for alias, channel in channels.built().items()
    }


class BroadcastCollector:
    """A ``prometheus_client`` collector reading ``channel_stats()`` when scraped."""

    def describe(self) -> Iterable[Any]:
        return self._families({})

    def collect(self) -> Iterable[Any]:
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


_registered: set[int] = set()


def register(registry: CollectorRegistry | None = None) -> bool:
    """Register ``BroadcastCollector`` with ``registry`` (default: prometheus_client's),
    once; return False when ``prometheus_client`` is not installed."""
    try:
        from prometheus_client import REGISTRY  # noqa: PLC0415 (an optional dependency)
    except ImportError:
        return False
    target = REGISTRY if registry is None else registry
    if id(target) not in _registered:
        target.register(BroadcastCollector())
        _registered.add(id(target))
    return True
