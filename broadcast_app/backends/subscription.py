"""The subscription every backend hands out: a started-on-demand view of one inbox."""

from __future__ import annotations

import os
import threading
import types
import warnings
import weakref
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import Generic, Self, TypeVar

from ..channel import Subscription
from ..exceptions import BroadcastChannelError, SubscriptionClosedError
from ._hub import Hub
from ._inbox import Inbox, Latch

T = TypeVar("T")


def check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}.")
    if timeout < 0:
        raise ValueError(f"timeout must not be negative, not {timeout!r}.")


def _release_unclosed(hub: Hub[T], inbox: Inbox[T]) -> None:
    warnings.warn(
        f"A subscription to topic {inbox.topic!r} was garbage-collected without close().",
        ResourceWarning,
        stacklevel=1,
    )
    hub.release(inbox)


class BaseSubscription(Generic[T]):
    """Lifecycle shared by all subscriptions: start on demand, close once, GC release.

    Starting joins the process-wide hub and waits until the backend confirms the
    topic (at most ``subscribe_timeout`` seconds, else ``BroadcastChannelError``).
    Joining a topic the process already receives costs no round trip. A started
    subscription that is garbage-collected without ``close()`` is released with a
    ``ResourceWarning``.
    """

    def __init__(self, hub: Hub[T], topic: str, buffer_size: int, subscribe_timeout: float):
        self._hub = hub
        self._inbox = self._create_inbox(topic, buffer_size)
        self._subscribe_timeout = subscribe_timeout
        self._lock = threading.Lock()
        self._joined = False
        self._closed = False
        self._finalizer: weakref.finalize[..., BaseSubscription[T]] | None = None

    def _create_inbox(self, topic: str, buffer_size: int) -> Inbox[T]:
        """Return the inbox the hub fills; called once, by ``__init__``."""
        return Inbox(topic, buffer_size)

    @property
    def topic(self) -> str:
        return self._inbox.topic

    @property
    def closed(self) -> bool:
        return self._closed or self._inbox.closed

    @property
    def dropped(self) -> int:
        return self._inbox.dropped

    @property
    def gaps(self) -> int:
        return self._inbox.gaps

    def _join(self) -> Latch | None:
        with self._lock:
            if self._closed:
                raise SubscriptionClosedError(f"The subscription to {self.topic!r} is closed.")
            if self._joined:
                return None
            latch = self._hub.join(self._inbox)
            self._joined = True
            self._finalizer = weakref.finalize(self, _release_unclosed, self._hub, self._inbox)
            return latch

    def _after_confirmation(self, latch: Latch, confirmed: bool) -> None:
        if latch.error is not None:
            self.close()
            raise BroadcastChannelError(
                f"The backend refused the subscription to {self.topic!r}: {latch.error}"
            ) from latch.error
        if self.closed:
            raise SubscriptionClosedError(f"The subscription to {self.topic!r} is closed.")
        if not confirmed:
            self.close()
            raise BroadcastChannelError(
                f"The backend did not confirm the subscription to {self.topic!r} "
                f"within {self._subscribe_timeout} seconds."
            )

    def _start(self) -> None:
        if self._joined and not self._closed:
            return  # The hot path of every receive: no lock.
        latch = self._join()
        if latch is not None:
            self._after_confirmation(latch, latch.wait(self._subscribe_timeout))

    async def _astart(self) -> None:
        if self._joined and not self._closed:
            return
        latch = self._join()
        if latch is not None:
            self._after_confirmation(latch, await latch.wait_async(self._subscribe_timeout))

    def close(self) -> None:
        if self._hub.pid != os.getpid():
            # Inherited through a fork: its locks may be held by a thread that is not here.
            self._closed = True
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            joined = self._joined
            if self._finalizer is not None:
                self._finalizer.detach()
        self._inbox.close()
        if joined:
            self._hub.leave(self._inbox)

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self._astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()

    def _next(self, timeout: float | None) -> T | None:
        check_timeout(timeout)
        self._start()
        return self._inbox.get(timeout)

    async def _anext(self, timeout: float | None) -> T | None:
        check_timeout(timeout)
        await self._astart()
        return await self._inbox.aget(timeout)

    def _iterate(self) -> Iterator[T]:
        try:
            self._start()
            while True:
                item = self._inbox.get(None)
                if item is not None:
                    yield item
        except SubscriptionClosedError:
            return

    async def _aiterate(self) -> AsyncIterator[T]:
        try:
            await self._astart()
            while True:
                item = await self._inbox.aget(None)
                if item is not None:
                    yield item
        except SubscriptionClosedError:
            return


class ChannelSubscription(Subscription):
    """What ``subscribe()`` returns on every backend: the ``Subscription`` protocol, its
    asyncio twins and the loss counters. Payloads are ``bytes``.

    Async twins: ``async with``, ``async for``, ``await areceive(timeout)``,
    ``await aclose()``. Use one style per subscription.
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
        """Messages discarded because this consumer fell ``buffer_size`` behind."""

    @property
    @abstractmethod
    def gaps(self) -> int:
        """Times this consumer may have missed messages (overflow or reconnect).

        Monotonic: compare with the value seen before to learn of a new gap.
        """

    @abstractmethod
    def __enter__(self) -> Self: ...

    @abstractmethod
    async def __aenter__(self) -> Self: ...

    @abstractmethod
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None: ...

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def areceive(self, timeout: float | None = 0.1) -> bytes | None:
        """Async twin of ``receive()``: awaits without holding a thread."""

    @abstractmethod
    async def aclose(self) -> None:
        """Async twin of ``close()`` (which never waits on the network)."""


class PayloadSubscription(BaseSubscription[bytes], ChannelSubscription):
    """A subscription whose inbox holds the payloads themselves."""

    def __iter__(self) -> Iterator[bytes]:
        return self._iterate()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._aiterate()

    def receive(self, timeout: float | None = 0.1) -> bytes | None:
        return self._next(timeout)

    async def areceive(self, timeout: float | None = 0.1) -> bytes | None:
        return await self._anext(timeout)
