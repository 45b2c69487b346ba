"""The broadcast channel protocols.

Every backend implements these. The contracts (blocking, thread-safety, what is
raised) are stated here once; backends document only what is specific to them.
"""

from __future__ import annotations

import types
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol, Self


class Subscription(AbstractContextManager["Subscription"], Protocol):
    """A live subscription to one topic; iterate it or call ``receive()``.

    Entering the context (or the first ``receive()`` / first ``next()``) starts the
    subscription: every message published after that point is delivered, in publish
    order per publisher. Leaving the context closes it.

    A subscription has a single consumer: use it from one thread (or task) at a time.
    ``close()`` is the exception and may be called from any thread.
    """

    @abstractmethod
    def __iter__(self) -> Iterator[bytes]:
        """Yield messages as they arrive, blocking between them.

        Starts the subscription if it has not been started. The iterator ends,
        without raising, once the subscription is closed.
        """
        ...

    @abstractmethod
    def close(self) -> None:
        """Stop receiving and release the resources held for this subscription.

        Idempotent and safe from any thread. A consumer blocked in ``receive()``
        wakes with ``SubscriptionClosedError``; a blocked iterator ends.
        """
        ...

    def __enter__(self) -> Self:
        """Start the subscription and return it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> bool | None:
        self.close()
        return None

    @abstractmethod
    def receive(self, timeout: float | None = 0.1) -> bytes | None:
        """Return the next message, or ``None`` if none arrives within ``timeout`` seconds.

        ``timeout=None`` blocks until a message arrives or the subscription is closed
        from another thread; prefer a finite timeout.

        Raises:
            SubscriptionClosedError: the subscription is closed.
        """
        ...


class Producer(Protocol):
    """Write access to one topic. Thread-safe."""

    @abstractmethod
    def publish(self, payload: bytes) -> None:
        """Deliver ``payload`` to every live subscription of the topic.

        Raises:
            TypeError: ``payload`` is not bytes-like (nothing is sent).
            PublishError: the backend could not accept the message.
        """
        ...


class Subscriber(Protocol):
    """Read access to one topic. Thread-safe."""

    @abstractmethod
    def subscribe(self) -> Subscription:
        """Return a new, not yet started, subscription to the topic."""
        ...


class Topic(Producer, Subscriber, Protocol):
    """A named topic with read and write access. Thread-safe."""

    @abstractmethod
    def as_producer(self) -> Producer:
        """Return a write-only view of this topic."""
        ...

    @abstractmethod
    def as_subscriber(self) -> Subscriber:
        """Return a read-only view of this topic."""
        ...


class BroadcastChannel(Protocol):
    """Isolated named topics with broadcast, at-most-once delivery. Thread-safe.

    Every live subscription of a topic receives each message published to it after
    the subscription started. Nothing is persisted for subscribers that are not
    live when a message is published.
    """

    @abstractmethod
    def topic(self, topic: str) -> Topic:
        """Return the topic named ``topic``.

        Raises:
            TypeError: ``topic`` is not a ``str``.
            ValueError: ``topic`` is empty, too long or holds control characters.
        """
        ...
