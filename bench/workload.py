"""What the measurements send, and how the fan-out measurements consume and time it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from broadcast_app.backends.subscription import ChannelSubscription

#: The payload every measurement publishes.
PAYLOAD = bytes(range(64))
#: A burst ends when no delivery happened for this long, or after HARD_LIMIT seconds.
IDLE_LIMIT = 3.0
HARD_LIMIT = 30.0
#: Seconds to wait for consumer threads to start or to finish.
JOIN_TIMEOUT = 60.0

T = TypeVar("T")


def rotated(sides: Sequence[T], number: int) -> list[T]:
    """``sides`` in the order of round ``number``: each side goes first in turn, so that
    a slow spell on the machine does not always hit the same one."""
    shift = number % len(sides)
    return [*sides[shift:], *sides[:shift]]


class Tally:
    """Per-consumer delivery counts of a burst of ``messages`` to each consumer.

    Each slot is written by one consumer only, so counting takes no lock.
    """

    def __init__(self, consumers: int, messages: int) -> None:
        self.messages = messages
        self.counts = [0] * consumers
        self.done_at: list[float | None] = [None] * consumers

    @property
    def expected(self) -> int:
        return len(self.counts) * self.messages

    def count(self, consumer: int) -> None:
        count = self.counts[consumer] = self.counts[consumer] + 1
        if count == self.messages:
            self.done_at[consumer] = time.perf_counter()

    def handler(self, consumer: int) -> Callable[[bytes], None]:
        return lambda _payload: self.count(consumer)

    def wait(self, began: float) -> tuple[int, float]:
        """Wait for the burst published from ``began`` (a ``perf_counter()``); return
        (deliveries, seconds until the last consumer had all its messages, or until the
        last delivery seen when some never arrive)."""
        delivered, changed_at = -1, began
        while True:
            total = sum(self.counts)
            now = time.perf_counter()
            if total != delivered:
                delivered, changed_at = total, now
            if total >= self.expected or now - changed_at > IDLE_LIMIT or now - began > HARD_LIMIT:
                break
            time.sleep(0.01)
        finished = [at for at in self.done_at if at is not None]
        ended = max(finished) if delivered >= self.expected else changed_at
        return delivered, ended - began


class AsyncConsumers:
    """Each subscription iterated (``async for``) by a task of its own, all on one event
    loop in one thread, like an ASGI server streaming to many clients; consumer ``n``
    counts into ``tally`` slot ``n`` and stops after ``tally.messages`` payloads."""

    def __init__(self, subscriptions: Sequence[ChannelSubscription], tally: Tally) -> None:
        self._subscriptions = subscriptions
        self._tally = tally
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="consumer-loop", daemon=True)

    async def _consume(self, number: int, subscription: ChannelSubscription) -> None:
        received = 0
        async for _payload in subscription:
            self._tally.count(number)
            received += 1
            if received == self._tally.messages:
                break

    async def _serve(self) -> None:
        for subscription in self._subscriptions:
            await subscription.__aenter__()
        tasks = [
            asyncio.create_task(self._consume(number, subscription))
            for number, subscription in enumerate(self._subscriptions)
        ]
        await asyncio.sleep(0)  # Every task is now awaiting its first message.
        self._ready.set()
        await asyncio.gather(*tasks)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._error = error
            self._ready.set()

    def start(self) -> None:
        """Return once every subscription is entered and every task awaits a message.

        Raises:
            RuntimeError: the consumers could not start.
        """
        self._thread.start()
        if not self._ready.wait(JOIN_TIMEOUT) or self._error is not None:
            raise RuntimeError("The asyncio consumers did not start.") from self._error

    def close(self) -> None:
        """Close every subscription (ending its task) and wait for the loop's thread."""
        for subscription in self._subscriptions:
            subscription.close()
        if self._thread.ident is not None:
            self._thread.join(JOIN_TIMEOUT)
