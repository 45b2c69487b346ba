"""The broadcast channel protocols: the public contract every backend implements.

The contracts (blocking, thread-safety, what is raised) are stated here once;
backends document only what is specific to them. This module imports neither
Django nor a Redis client.
"""

from __future__ import annotations

import types
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, Self

#: The cursor before every message: subscribing from it replays all that is retained.
ORIGIN = "0-0"


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Message:
    """One delivered message.

    A hub hands the same ``Message`` object to every subscription of its process, so
    per-message work (framing, decoding) can be done once and shared.
    """

    #: The bytes published, exactly.
    payload: bytes
    #: Where the message sits in the topic's history, on a channel that keeps history
    #: (subscribe again from it to get what follows); None elsewhere.
    cursor: str | None = None
    #: The event name given by the publisher (see ``send_event``); None for a plain
    #: ``publish()``.
    event: str | None = None


#: ``listener(topic, message)``, told of each successful publish (see
#: ``BroadcastChannel.add_publish_listener``).
PublishListener = Callable[[str, "Message"], None]


@dataclass(frozen=True, slots=True)
class ChannelFeatures:
    """What a channel can do; the Django face decides by these, never by class."""

    #: Topics are ``CursorTopic``: messages carry cursors, and a subscription can
    #: start from one to replay what is retained.
    keeps_history: bool = False
    #: Messages reach subscribers in other processes (False: this process only).
    crosses_processes: bool = True


class Subscription(AbstractContextManager["Subscription"], Protocol):
    """A live subscription to one topic; iterate it or call ``receive()``.

    Entering the context (or the first ``receive()`` / first ``next()``) starts the
    subscription: every message published after that point is delivered, in publish
    order per publisher. Leaving the context closes it.

    A subscription has a single consumer: use it from one thread (or task) at a time.
    ``close()`` is the exception and may be called from any thread. Every blocking
    method has an ``a``-prefixed asyncio twin that waits without holding a thread; use
    one style per subscription.

    Raises (from starting, i.e. entering or the first receive):
        BroadcastChannelError: the backend refused the topic or did not confirm it
            within the channel's ``subscribe_timeout``.
    """

    @property
    @abstractmethod
    def topic(self) -> str:
        """The name of the topic."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether ``close()`` was called (or the channel was closed)."""

    @property
    @abstractmethod
    def dropped(self) -> int:
        """Messages discarded because this consumer fell too far behind."""

    @property
    @abstractmethod
    def gaps(self) -> int:
        """Times this consumer may have missed messages (overflow or reconnect).

        Monotonic: compare with the value seen before to learn of a new gap.
        """

    @abstractmethod
    def __iter__(self) -> Iterator[bytes]:
        """Yield payloads as they arrive, blocking between them.

        Starts the subscription if it has not been started. The iterator ends,
        without raising, once the subscription is closed.
        """
        ...

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]:
        """Async twin of ``__iter__()``."""
        ...

    @abstractmethod
    def close(self) -> None:
        """Stop receiving and release the resources held for this subscription.

        Idempotent, never waits on the network, and safe from any thread. A consumer
        blocked in ``receive()`` wakes with ``SubscriptionClosedError``; a blocked
        iterator ends; a consumer blocked in starting wakes too.
        """
        ...

    @abstractmethod
    async def aclose(self) -> None:
        """Async twin of ``close()``."""

    def __enter__(self) -> Self:
        """Start the subscription and return it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> bool | None:
        """Close the subscription."""
        self.close()
        return None

    @abstractmethod
    async def __aenter__(self) -> Self:
        """Async twin of ``__enter__()``."""

    @abstractmethod
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        """Close the subscription."""

    @abstractmethod
    def receive(self, timeout: float | None = 0.1) -> bytes | None:
        """Return the next payload, or ``None`` if none arrives within ``timeout`` seconds.

        ``timeout=None`` blocks until a message arrives or the subscription is closed
        from another thread; prefer a finite timeout.

        Raises:
            SubscriptionClosedError: the subscription is closed.
            TypeError, ValueError: ``timeout`` is not a non-negative number or None.
        """
        ...

    @abstractmethod
    async def areceive(self, timeout: float | None = 0.1) -> bytes | None:
        """Async twin of ``receive()``."""

    @abstractmethod
    def receive_message(self, timeout: float | None = 0.1) -> Message | None:
        """Like ``receive()``, but return the whole ``Message`` (cursor, event name).

        The same shape on every backend: ``cursor`` is None where there is no history.
        """

    @abstractmethod
    async def areceive_message(self, timeout: float | None = 0.1) -> Message | None:
        """Async twin of ``receive_message()``."""


class CursorSubscription(Subscription):
    """A subscription of a ``CursorTopic``: its messages carry cursors.

    Unlike the protocols, the cursor types are nominal: test for them with
    ``isinstance`` (or better, ask ``channel.features.keeps_history``)."""

    @property
    @abstractmethod
    def cursor(self) -> str:
        """The cursor to resume from: that of the last message received, or, before
        any, the position the subscription started at.

        Subscribing again from it misses nothing still retained.
        """

    @abstractmethod
    def receive_with_cursor(self, timeout: float | None = 0.1) -> Message | None:
        """``receive_message()``, whose messages always have a cursor."""

    @abstractmethod
    async def areceive_with_cursor(self, timeout: float | None = 0.1) -> Message | None:
        """Async twin of ``receive_with_cursor()``."""


class Producer(Protocol):
    """Write access to one topic. Thread-safe."""

    @abstractmethod
    def publish(self, payload: bytes, *, event: str | None = None) -> None:
        """Deliver ``payload`` to every live subscription of the topic.

        Subscribers receive exactly ``payload``. With ``event``, the message is the
        named event ``event`` (``Message.event``; an SSE event of that name), whose
        data is ``payload``.

        Raises:
            TypeError: ``payload`` is not bytes-like, or ``event`` not a str (nothing
                is sent).
            ValueError: ``event`` is not a usable event name (nothing is sent).
            PublishError: the backend could not accept the message.
        """
        ...

    @abstractmethod
    async def apublish(self, payload: bytes, *, event: str | None = None) -> None:
        """Async twin of ``publish()``."""


class Subscriber(Protocol):
    """Read access to one topic. Thread-safe."""

    @abstractmethod
    def subscribe(self, *, buffer_bytes: int | None = None) -> Subscription:
        """Return a new, not yet started, subscription to the topic. No I/O.

        ``buffer_bytes`` bounds the payload bytes waiting for the consumer, on top of
        the channel's ``buffer_size`` (a count): past either bound the oldest message
        is dropped, counted in ``dropped``, and the overflow counts one ``gap``.

        Raises:
            ValueError: ``buffer_bytes`` is not a positive int or None.
        """
        ...


class Topic(Producer, Subscriber, Protocol):
    """A named topic with read and write access. Thread-safe."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The topic's name."""

    @abstractmethod
    def as_producer(self) -> Producer:
        """Return a write-only view of this topic."""
        ...

    @abstractmethod
    def as_subscriber(self) -> Subscriber:
        """Return a read-only view of this topic."""
        ...


class CursorSubscriber(Subscriber):
    """Read access to a topic with history. Thread-safe."""

    @abstractmethod
    def subscribe(
        self, cursor: str | None = None, *, buffer_bytes: int | None = None
    ) -> CursorSubscription:
        """Return a new, not yet started, subscription. No I/O.

        Without ``cursor``, it receives the messages published after it started, like
        any subscription. With one, it first receives every retained message after
        ``cursor`` (``ORIGIN``: all of them), then the live ones, with none missed or
        repeated at the seam. A cursor older than what is retained counts as a gap.

        Raises:
            TypeError, ValueError: ``cursor`` is not ``"<ms>-<seq>"`` (two decimal
                numbers that fit in 64 bits), or ``buffer_bytes`` is invalid.
        """


class CursorTopic(Topic, CursorSubscriber):
    """A topic whose subscriptions can start from a cursor (``features.keeps_history``)."""

    @abstractmethod
    def subscribe(
        self, cursor: str | None = None, *, buffer_bytes: int | None = None
    ) -> CursorSubscription:
        """See ``CursorSubscriber.subscribe()``."""
        ...

    @abstractmethod
    def as_subscriber(self) -> CursorSubscriber:
        """Return a read-only view of this topic, whose subscriptions take a cursor."""
        ...


class BroadcastChannel(Protocol):
    """Isolated named topics with broadcast, at-most-once delivery. Thread-safe.

    Every live subscription of a topic receives each message published to it after
    the subscription started. Nothing is persisted for subscribers that are not
    live when a message is published, unless ``features.keeps_history``.
    """

    @property
    @abstractmethod
    def features(self) -> ChannelFeatures:
        """What this channel can do."""

    @abstractmethod
    def topic(self, topic: str) -> Topic:
        """Return the topic named ``topic``. Cheap; no I/O.

        On a channel whose ``features.keeps_history``, the topic is a ``CursorTopic``.

        Raises:
            TypeError: ``topic`` is not a ``str``.
            ValueError: ``topic`` is empty, too long or holds control characters.
        """
        ...

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """This process's figures for the channel, e.g. for a health page. Thread-safe.

        ``subscriptions`` (live now) and the running totals since the channel was
        built: ``messages_published_total``, ``messages_delivered_total`` (one per
        receiving subscription), ``messages_dropped_total``, ``gaps_total`` and
        ``reconnects_total``. ``broadcast_app.metrics`` exports them to Prometheus.
        """

    @abstractmethod
    def add_publish_listener(self, listener: PublishListener) -> Callable[[], None]:
        """Call ``listener(topic, message)`` after each successful publish made through
        this channel in this process; return a function that removes it. Thread-safe.

        Listeners run in the publishing thread, in the order added: they must be quick
        and must not raise (what they raise reaches the publisher). Messages published
        by other processes are not seen: subscribe for those.
        """

    @abstractmethod
    def close(self) -> None:
        """End every subscription and release connections and threads. Idempotent.

        A closed channel reopens on next use.
        """

    @abstractmethod
    def __enter__(self) -> Self:
        """Return the channel; leaving the context closes it."""
        ...

    @abstractmethod
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        """Close the channel."""
        ...
