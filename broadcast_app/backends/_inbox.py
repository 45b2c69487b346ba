"""Thread-to-consumer hand-off: the bounded inbox of one subscription, and a latch.

Both are filled from any thread (a backend's reader thread, a publisher) and drained
by one consumer that is either a blocked thread or an asyncio task on its own loop.
Filling never blocks on the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

from ..channel import Message
from ..exceptions import SubscriptionClosedError
from ._stats import ChannelStats

logger = logging.getLogger("broadcast_app")

#: Seconds between two overflow warnings of the same inbox.
DROP_LOG_INTERVAL = 10.0

_AsyncWaiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def _resolve(*futures: asyncio.Future[None]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _wake(waiter: _AsyncWaiter) -> None:
    loop, future = waiter
    # A closed loop raises RuntimeError: its consumer is gone, nobody needs waking.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, future)


def wake_all(inboxes: Iterable[Inbox]) -> None:
    """Wake the consumers of ``inboxes``: threads one by one, asyncio tasks with one
    call per event loop (each such call writes to the loop's self-pipe)."""
    futures: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for inbox in inboxes:
        waiter = inbox.wake()
        if waiter is not None:
            futures.setdefault(waiter[0], []).append(waiter[1])
    for loop, waiting in futures.items():
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, *waiting)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class Latch:
    """A one-shot flag: ``set()`` or ``fail()`` from any thread; ``wait()`` or
    ``await wait_async()``. After ``set(value)``, ``value`` holds what the setter
    learned (e.g. a start position); after ``fail(error)``, ``error`` says why.
    ``forward(other)`` sets ``other`` too when this latch is set."""

    __slots__ = ("_event", "_followers", "_lock", "_waiters", "error", "value")

    def __init__(self, *, is_set: bool = False) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[_AsyncWaiter] = []
        self._followers: list[Latch] = []
        self.error: BaseException | None = None
        self.value: str | None = None
        if is_set:
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self, value: str | None = None) -> None:
        with self._lock:
            if not self._event.is_set():
                self.value = value
            self._event.set()
            waiters, self._waiters = self._waiters, []
            followers, self._followers = self._followers, []
        for waiter in waiters:
            _wake(waiter)
        for follower in followers:
            follower.set()

    def forward(self, follower: Latch) -> None:
        """Set ``follower`` when this latch is set (at once if it is)."""
        with self._lock:
            if not self._event.is_set():
                self._followers.append(follower)
                return
        follower.set()

    def unforward(self, follower: Latch) -> None:
        """Undo ``forward(follower)``, so that this latch holds no reference to it."""
        with self._lock:
            if follower in self._followers:
                self._followers.remove(follower)

    def fail(self, error: BaseException) -> None:
        """Set the latch with ``error`` as the outcome."""
        self.error = error
        self.set()

    def wait(self, timeout: float | None) -> bool:
        """Block until set; return False if ``timeout`` seconds pass first."""
        return self._event.wait(timeout)

    async def wait_async(self, timeout: float | None) -> bool:
        """Await until set; return False if ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        waiter: _AsyncWaiter = (loop, loop.create_future())
        with self._lock:
            if self._event.is_set():
                return True
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter[1]
        except TimeoutError:
            return self._event.is_set()
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True


class Inbox:
    """The bounded buffer of one subscription.

    ``push()`` never blocks: when the buffer holds ``capacity`` messages, or more
    than ``max_bytes`` payload bytes (None: no byte bound), the oldest are dropped
    and counted; the newest message is always kept. The consumer is woken apart, by
    ``wake()`` or ``wake_all()``, so that a batch of messages wakes it once. ``get()``
    and ``aget()`` are for the single consumer; ``close()`` and ``mark_gap()`` may be
    called from any thread. ``close()`` sets ``settled``: a consumer waiting for its
    subscription to start waits on it, with the upstream confirmation forwarded to it.
    """

    __slots__ = (
        "_async_waiter",
        "_bytes",
        "_capacity",
        "_items",
        "_lock",
        "_logged_at",
        "_max_bytes",
        "_overflowing",
        "_ready",
        "_stats",
        "_sync_waiting",
        "_unlogged_drops",
        "closed",
        "dropped",
        "gaps",
        "settled",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        capacity: int,
        max_bytes: int | None = None,
        stats: ChannelStats | None = None,
    ) -> None:
        self.topic = topic
        self._stats = stats
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: deque[Message] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._sync_waiting = False
        self._async_waiter: _AsyncWaiter | None = None
        self._overflowing = False
        self._unlogged_drops = 0
        self._logged_at = -DROP_LOG_INTERVAL
        self.closed = False
        #: Messages discarded because the consumer fell ``capacity`` messages behind.
        self.dropped = 0
        #: Times the consumer may have missed messages: overflows and upstream outages.
        self.gaps = 0
        self.settled = Latch()

    def _full(self, incoming: int) -> bool:
        items = self._items
        if not items:
            return False
        if len(items) >= self._capacity:
            return True
        return self._max_bytes is not None and self._bytes + incoming > self._max_bytes

    def _make_room(self, incoming: int) -> int:
        """Drop the oldest items until ``incoming`` more bytes fit; return how many.
        Call with ``_lock`` held."""
        dropped = 0
        while self._full(incoming):
            self._pop_oldest()
            dropped += 1
        return dropped

    def _pop_oldest(self) -> Message:
        item = self._items.popleft()
        self._bytes -= len(item.payload)
        return item

    def _append(self, item: Message) -> None:
        self._items.append(item)
        self._bytes += len(item.payload)

    def push(self, item: Message) -> bool:
        """Append ``item``, dropping the oldest items to make room; never blocks.

        Returns True when the consumer waits: ``wake()`` (or ``wake_all``) must follow.
        """
        report = gaps = 0
        size = len(item.payload)
        with self._lock:
            if self.closed:
                return False
            dropped = self._make_room(size)
            if dropped:
                self.dropped += dropped
                self._unlogged_drops += dropped
                if not self._overflowing:
                    self._overflowing = True
                    gaps = 1
                    self.gaps += 1
                now = time.monotonic()
                if now - self._logged_at >= DROP_LOG_INTERVAL:
                    report, self._unlogged_drops, self._logged_at = self._unlogged_drops, 0, now
            self._append(item)
            waiting = self._sync_waiting or self._async_waiter is not None
        if dropped and self._stats is not None:
            self._stats.add(dropped=dropped, gaps=gaps)
        if report:
            logger.warning(
                "A subscriber of topic %r is too slow: dropped %d message(s) "
                "(buffer_size=%d, buffer_bytes=%s, %d dropped in all).",
                self.topic,
                report,
                self._capacity,
                self._max_bytes,
                self.dropped,
            )
        return waiting

    def wake(self) -> _AsyncWaiter | None:
        """Wake a consumer thread waiting in ``get()``; return the waiter of a task
        awaiting ``aget()``, for the caller to wake (see ``wake_all``)."""
        with self._lock:
            if self._sync_waiting:
                self._ready.notify()
            waiter, self._async_waiter = self._async_waiter, None
        return waiter

    def mark_gap(self) -> None:
        """Record that messages may have been missed (an upstream outage)."""
        with self._lock:
            self.gaps += 1
        if self._stats is not None:
            self._stats.add(gaps=1)

    def close(self) -> None:
        """Discard buffered items and wake the consumer. Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._items.clear()
            self._bytes = 0
            self._ready.notify_all()
            waiter, self._async_waiter = self._async_waiter, None
        if waiter is not None:
            _wake(waiter)
        self.settled.set()

    def _take(self) -> Message:
        self._overflowing = False
        return self._pop_oldest()

    def get(self, timeout: float | None) -> Message | None:
        """Return the next item, or None after ``timeout`` seconds (None: no limit).

        Raises:
            SubscriptionClosedError: the inbox is closed, before or while waiting.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._sync_waiting = True
            try:
                while not self._items and not self.closed:
                    remaining = _remaining(deadline)
                    if remaining is not None and remaining <= 0:
                        break
                    self._ready.wait(remaining)
            finally:
                self._sync_waiting = False
            if self.closed:
                raise SubscriptionClosedError(f"The subscription to {self.topic!r} is closed.")
            return self._take() if self._items else None

    async def aget(self, timeout: float | None) -> Message | None:
        """Await the next item, or None after ``timeout`` seconds (None: no limit).

        Raises:
            SubscriptionClosedError: the inbox is closed, before or while waiting.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                if self.closed:
                    raise SubscriptionClosedError(f"The subscription to {self.topic!r} is closed.")
                if self._items:
                    return self._take()
                if deadline is not None and loop.time() >= deadline:
                    return None
                waiter: _AsyncWaiter = (loop, loop.create_future())
                self._async_waiter = waiter
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter[1]
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    if self._async_waiter is waiter:
                        self._async_waiter = None
