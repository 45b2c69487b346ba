"""The per-process multiplexer: one upstream feed per topic, shared by local subscriptions."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

from ..channel import Message
from ..exceptions import BroadcastChannelError
from ._inbox import Inbox, Latch, wake_all
from ._stats import ChannelStats


class Upstream(Protocol):
    """The link from a hub to the message source (a Redis connection, or nothing).

    ``listen``, ``confirmation`` and ``unlisten`` are called with the hub's lock held,
    in the order the topic's first subscriber joins and its last one leaves; they
    must not block on a round trip to the source.
    """

    def listen(self, topic: str) -> Latch:
        """Start receiving ``topic``; the latch is set once the source confirms."""
        ...

    def confirmation(self, topic: str) -> Latch:
        """Return the current confirmation latch of a topic already listened to."""
        ...

    def unlisten(self, topic: str) -> None:
        """Stop receiving ``topic``."""
        ...

    def close(self) -> None:
        """Release connections and threads. Called once, by ``Hub.close()``."""
        ...

    def abandon(self) -> None:
        """Make the threads end and release their connections, without blocking and
        without taking a lock: called by the garbage collector, in any thread, for a
        channel nobody closed. Called at most once, and never after ``close()``."""
        ...


class _Route:
    """The inboxes of one topic.

    ``members`` is who is routed, changed under the hub's lock. ``inboxes`` is what
    dispatch reads without a lock: a list that joins append to, and that leaves replace
    with a fresh copy of ``members`` only once half of it has left. Until then it holds
    inboxes that left; they are closed and take nothing. So joining and leaving cost
    O(1), amortised, however many subscriptions the topic has.
    """

    __slots__ = ("inboxes", "members")

    def __init__(self) -> None:
        self.members: dict[Inbox, None] = {}
        self.inboxes: list[Inbox] = []

    def add(self, inbox: Inbox) -> None:
        self.members[inbox] = None
        self.inboxes.append(inbox)

    def discard(self, inbox: Inbox) -> bool:
        """Remove a closed ``inbox``; False if it was not a member."""
        if inbox not in self.members:
            return False
        del self.members[inbox]
        if len(self.inboxes) > 2 * len(self.members) + 8:
            self.inboxes = list(self.members)
        return True


#: The route of a topic nobody subscribes to; never changed.
_NO_ROUTE = _Route()


class Hub:
    """Routes messages from one upstream to the inboxes of local subscriptions, by topic.

    Thread-safe. ``dispatch`` reads the routes without a lock, so a reader thread never
    waits on subscribers joining or leaving (see ``_Route``). A hub belongs to the
    process that created it: in a forked child every method is a no-op, so the child
    never writes to a socket it shares with its parent.
    """

    def __init__(
        self, upstream_factory: Callable[[Hub], Upstream], stats: ChannelStats | None = None
    ) -> None:
        self.pid = os.getpid()
        #: The channel's totals; feeds report reconnects to it, inboxes drops and gaps.
        self.stats = ChannelStats() if stats is None else stats
        self.closed = False
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._orphans: deque[Inbox] = deque()
        self.upstream = upstream_factory(self)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self._release_orphans()
            yield
            self._release_orphans()

    def _release_orphans(self) -> None:
        while self._orphans:
            self._remove(self._orphans.popleft())

    def _remove(self, inbox: Inbox) -> None:
        route = self._routes.get(inbox.topic)
        if route is None or not route.discard(inbox):
            return
        if not route.members:
            del self._routes[inbox.topic]
            self.upstream.unlisten(inbox.topic)

    def join(self, inbox: Inbox) -> Latch:
        """Route the inbox's topic to it; return the latch of the upstream confirmation.

        Raises:
            BroadcastChannelError: the hub is closed.
        """
        with self._locked():
            if self.closed:
                raise BroadcastChannelError("The broadcast channel is closed.")
            route = self._routes.get(inbox.topic)
            if route is None:
                latch = self.upstream.listen(inbox.topic)
                route = self._routes[inbox.topic] = _Route()
            else:
                latch = self.upstream.confirmation(inbox.topic)
            route.add(inbox)
        return latch

    def leave(self, inbox: Inbox) -> None:
        """Close ``inbox`` and stop routing to it; unlisten its topic if it was the last."""
        if os.getpid() != self.pid:
            return
        inbox.close()
        with self._locked():
            self._remove(inbox)

    def release(self, inbox: Inbox) -> None:
        """``leave()`` for garbage collection: never blocks, and may run in any thread.

        If the lock is busy (possibly held by the very thread the collector interrupted),
        the leave is done by the next caller that takes it.
        """
        if os.getpid() != self.pid:
            return
        inbox.close()
        self._orphans.append(inbox)
        if self._lock.acquire(blocking=False):
            try:
                self._release_orphans()
            finally:
                self._lock.release()

    def refuse(self, topic: str) -> int:
        """The source refused ``topic``: close its inboxes and unlisten; return how many."""
        with self._locked():
            route = self._routes.pop(topic, None)
            if route is not None:
                self.upstream.unlisten(topic)
        inboxes = [] if route is None else list(route.members)
        for inbox in inboxes:
            inbox.close()
        return len(inboxes)

    def dispatch(self, topic: str, item: Message) -> None:
        """Deliver ``item`` to every inbox of ``topic``. Never blocks."""
        self.dispatch_many(((topic, item),))

    def dispatch_many(self, messages: Iterable[tuple[str, Message]]) -> None:
        """Deliver ``(topic, item)`` pairs in order, then wake each waiting consumer
        once: a consumer of a busy topic drains a batch per wake-up. Never blocks."""
        routes = self._routes
        batch = [(item, routes.get(topic, _NO_ROUTE)) for topic, item in messages]
        # Counted first: a consumer that is not asleep may take a message as soon as it
        # is pushed, and must find it counted.
        delivered = sum(len(route.members) for _, route in batch)
        if delivered:
            self.stats.add(delivered=delivered)
        waiting: dict[Inbox, None] = {}
        for item, route in batch:
            for inbox in route.inboxes:
                if inbox.push(item):
                    waiting[inbox] = None
        wake_all(waiting)

    def subscriptions(self) -> int:
        """The number of local subscriptions now."""
        return sum(len(route.members) for route in list(self._routes.values()))

    def topics(self) -> list[str]:
        """The topics that have local subscribers now."""
        return list(self._routes)

    def mark_gap(self, topics: Iterable[str]) -> None:
        """Tell the subscriptions of ``topics`` that messages may have been missed."""
        for topic in topics:
            for inbox in self._routes.get(topic, _NO_ROUTE).inboxes:
                inbox.mark_gap()

    def abandon(self) -> None:
        """``close()`` for the garbage collector, which found the channel unreachable (so
        are its subscriptions): stop the upstream without blocking or taking a lock. The
        inboxes are garbage already."""
        if self.closed or os.getpid() != self.pid:
            return
        self.closed = True
        self.upstream.abandon()

    def close(self) -> None:
        """Close every inbox and the upstream. Idempotent."""
        if os.getpid() != self.pid:
            return
        with self._locked():
            if self.closed:
                return
            self.closed = True
            routes, self._routes = self._routes, {}
        for route in routes.values():
            for inbox in route.members:
                inbox.close()
        self.upstream.close()
