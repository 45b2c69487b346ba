"""The running totals a channel reports through ``stats()``.

One ``ChannelStats`` per channel, kept across the hubs it builds (after ``close()``
or a fork), so every total only grows. Thread-safe; the hot paths add to it once
per batch, or only on the slow path (drops, gaps, reconnects).
"""

from __future__ import annotations

import threading


class ChannelStats:
    """Totals of one channel in this process."""

    __slots__ = ("_lock", "delivered", "dropped", "gaps", "published", "reconnects")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Messages published through the channel, successfully.
        self.published = 0
        #: Messages handed to local subscriptions (one per subscription).
        self.delivered = 0
        #: Messages subscriptions discarded because their consumer fell behind.
        self.dropped = 0
        #: Times a subscription may have missed messages (overflow, outage).
        self.gaps = 0
        #: Times a feed reconnected to its server after losing it.
        self.reconnects = 0

    def add(
        self,
        *,
        published: int = 0,
        delivered: int = 0,
        dropped: int = 0,
        gaps: int = 0,
        reconnects: int = 0,
    ) -> None:
        with self._lock:
            self.published += published
            self.delivered += delivered
            self.dropped += dropped
            self.gaps += gaps
            self.reconnects += reconnects

    def snapshot(self, subscriptions: int) -> dict[str, int]:
        """The figures of ``BroadcastChannel.stats()``, with the live subscriptions."""
        with self._lock:
            return {
                "subscriptions": subscriptions,
                "messages_published_total": self.published,
                "messages_delivered_total": self.delivered,
                "messages_dropped_total": self.dropped,
                "gaps_total": self.gaps,
                "reconnects_total": self.reconnects,
            }
