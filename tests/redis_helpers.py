"""Parametrizations, thread accounting and a fan-out check shared by the Redis engine tests."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

import pytest

from .waiting import WAIT

both_protocols = pytest.mark.parametrize("backend", ["redis-resp2", "redis-resp3"])
resp3 = pytest.mark.parametrize("backend", ["redis-resp3"])


def engine_threads(before: Iterable[threading.Thread] = ()) -> list[str]:
    """Names of the engine threads running now that were not running ``before``.

    Other tests' long-lived channels may have readers of their own; they do not count.
    """
    return [
        thread.name
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith("broadcast_app-")
    ]


def subscribe_and_deliver(stack: ExitStack, channel: Any, names: list[str], count: int) -> None:
    """Enter ``count`` subscriptions on ``stack``, spread round-robin over the topics
    ``names``; publish each topic's name to it once and assert every subscription gets it."""
    subs = [
        stack.enter_context(channel.topic(names[number % len(names)]).subscribe())
        for number in range(count)
    ]
    for name in names:
        channel.topic(name).publish(name.encode())
    for sub in subs:
        assert sub.receive(WAIT) == sub.topic.encode()
