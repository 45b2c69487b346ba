"""Joining and leaving a topic cost the same however many subscriptions it has.

The hub is shared by every backend; the in-memory channel drives it without network
noise. Real figures are in ``bench/closing.py``; this is a generous guard against a
quadratic regression (a per-topic rebuild on each join or leave).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING

from broadcast_app.backends.memory import InMemoryBroadcastChannel

from .waiting import WAIT

if TYPE_CHECKING:
    pass

#: Subscriptions opened and closed in each timed round.
ROUND = 1000
#: Subscriptions of the topic around the timed round: few, then many.
FEW, MANY = 0, 20_000
#: A per-operation cost growing with the topic's size would make this ratio about 20.
MOST_RATIO = 5.0


def _time_a_round(channel: InMemoryBroadcastChannel, others: int) -> float:
    """Seconds to open and close ROUND subscriptions of a topic that has ``others`` more."""
    topic = channel.topic("crowded")
    with ExitStack() as stack:
        for _ in range(others):
            stack.enter_context(topic.subscribe())
        started = time.perf_counter()
        subs = [topic.subscribe().__enter__() for _ in range(ROUND)]
        random.shuffle(subs)
        for sub in subs:
            sub.close()
        elapsed = time.perf_counter() - started
        topic.publish(b"still routed")
    return elapsed


def test_opening_and_closing_one_of_many_subscriptions_is_o_1(
    record_property: Callable[[str, object], None],
) -> None:
    with InMemoryBroadcastChannel() as channel:
        few = min(_time_a_round(channel, FEW) for _ in range(3))
        many = min(_time_a_round(channel, MANY) for _ in range(3))
    record_property("round_with_few_seconds", few)
    record_property("round_with_many_seconds", many)
    print(f"{ROUND} subscribe+close: {few * 1e3:.1f} ms alone, {many * 1e3:.1f} ms among {MANY}")
    assert many < MOST_RATIO * few + 0.05


def test_ten_thousand_subscriptions_open_deliver_and_close(
    record_property: Callable[[str, object], None],
) -> None:
    with InMemoryBroadcastChannel() as channel:
        topic = channel.topic("ten thousand")
        started = time.perf_counter()
        subs = [topic.subscribe().__enter__() for _ in range(10_000)]
        topic.publish(b"to all")
        assert all(sub.receive(WAIT) == b"to all" for sub in subs)
        random.shuffle(subs)
        for sub in subs:
            sub.close()
        elapsed = time.perf_counter() - started
        assert channel.stats()["subscriptions"] == 0
    record_property("ten_thousand_seconds", elapsed)
    print(f"10k subscriptions opened, delivered to and closed in {elapsed:.2f} s")
    assert elapsed < 10.0
