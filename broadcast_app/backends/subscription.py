"""The subscription every backend hands out: a started-on-demand view of one inbox."""

from __future__ import annotations

import math
import os
import threading
import types
import warnings
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Self

from ..channel import Message, Subscription
from ..exceptions import BroadcastChannelError, SubscriptionClosedError
from ._hub import Hub
from ._inbox import Inbox, Latch


def check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}.")
    if not 0 <= timeout < math.inf:  # nan too: it compares false.
        raise ValueError(
            f"timeout must be a finite number of seconds, not negative, or None to wait "
            f"without end; not {timeout!r}."
        )


def check_buffer_bytes(buffer_bytes: int | None) -> int | None:
    if buffer_bytes is None:
        return None
    if isinstance(buffer_bytes, bool) or not isinstance(buffer_bytes, int) or buffer_bytes < 1:
        raise ValueError(f"buffer_bytes must be a positive int or None, not {buffer_bytes!r}.")
    return buffer_bytes


def _release_unclosed(hub: Hub, inbox: Inbox) -> None:
    warnings.warn(
        f"A subscription to topic {inbox.topic!r} was garbage-collected without close().",
        ResourceWarning,
        stacklevel=1,
    )
    hub.release(inbox)


class ChannelSubscription(Subscription):
    """The ``Subscription`` of every backend; see the protocol for the contract.

    Lifecycle: start on demand, close once, release on garbage collection.

    Starting joins the process-wide hub and waits until the backend confirms the
    topic (at most ``subscribe_timeout`` seconds, else ``BroadcastChannelError``).
    Joining a topic the process already receives costs no round trip. A started
    subscription that is garbage-collected without ``close()`` is released with a
    ``ResourceWarning``.
    """

    def __init__(
        self,
        hub: Hub,
        topic: str,
        buffer_size: int,
        subscribe_timeout: float,
        buffer_bytes: int | None = None,
        *,
        owner: object = None,
    ) -> None:
        # The channel: kept alive while its subscriptions are, as dropping it releases
        # the hub (see ``HubOwner``).
        self._owner = owner
        self._hub = hub
        self._inbox = self._create_inbox(topic, buffer_size, check_buffer_bytes(buffer_bytes))
        self._subscribe_timeout = subscribe_timeout
        self._lock = threading.Lock()
        self._joined = False
        self._closed = False
        self._finalizer: weakref.finalize[..., ChannelSubscription] | None = None

    def _create_inbox(self, topic: str, buffer_size: int, buffer_bytes: int | None) -> Inbox:
        """Return the inbox the hub fills; called once, by ``__init__``."""
        return Inbox(topic, buffer_size, buffer_bytes, self._hub.stats)

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

    def _after_confirmation(self, latch: Latch) -> None:
        latch.unforward(self._inbox.settled)
        if latch.error is not None:
            self.close()
            raise BroadcastChannelError(
                f"The backend refused the subscription to {self.topic!r}: {latch.error}"
            ) from latch.error
        if self.closed:
            raise SubscriptionClosedError(f"The subscription to {self.topic!r} is closed.")
        if not latch.is_set():
            self.close()
            raise BroadcastChannelError(
                f"The backend did not confirm the subscription to {self.topic!r} "
                f"within {self._subscribe_timeout} seconds."
            )

    # A consumer waits on its inbox's ``settled`` latch, which ``close()`` sets too: closing
    # a subscription wakes its consumer at once, even while other subscriptions of the
    # topic go on waiting for the confirmation.
    def _start(self) -> None:
        if self._joined and not self._closed:
            return  # The hot path of every receive: no lock.
        latch = self._join()
        if latch is not None:
            latch.forward(self._inbox.settled)
            self._inbox.settled.wait(self._subscribe_timeout)
            self._after_confirmation(latch)

    async def _astart(self) -> None:
        if self._joined and not self._closed:
            return
        latch = self._join()
        if latch is not None:
            latch.forward(self._inbox.settled)
            await self._inbox.settled.wait_async(self._subscribe_timeout)
            self._after_confirmation(latch)

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

    def _next(self, timeout: float | None) -> Message | None:
        check_timeout(timeout)
        self._start()
        return self._inbox.get(timeout)

    async def _anext(self, timeout: float | None) -> Message | None:
        check_timeout(timeout)
        await self._astart()
        return await self._inbox.aget(timeout)

    def _iterate(self) -> Iterator[Message]:
        try:
            self._start()
            while True:
                item = self._inbox.get(None)
                if item is not None:
                    yield item
        except SubscriptionClosedError:
            return

    async def _aiterate(self) -> AsyncIterator[Message]:
        try:
            await self._astart()
            while True:
                item = await self._inbox.aget(None)
                if item is not None:
                    yield item
        except SubscriptionClosedError:
            return

    # -- the public API, drawn from ``_next`` / ``_iterate`` --------------------------------

    def __iter__(self) -> Iterator[bytes]:
        for message in self._iterate():
            yield message.payload

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for message in self._aiterate():
            yield message.payload

    def receive(self, timeout: float | None = 0.1) -> bytes | None:
        message = self._next(timeout)
        return None if message is None else message.payload

    async def areceive(self, timeout: float | None = 0.1) -> bytes | None:
        message = await self._anext(timeout)
        return None if message is None else message.payload

    def receive_message(self, timeout: float | None = 0.1) -> Message | None:
        return self._next(timeout)

    async def areceive_message(self, timeout: float | None = 0.1) -> Message | None:
        return await self._anext(timeout)
