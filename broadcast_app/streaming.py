"""The life of a Server-Sent Events stream, shared by the Django view and the ASGI fast path.

``EventStream`` turns a started subscription into the chunks of an SSE body, sync
(WSGI) or async (ASGI), with the same wire format everywhere: ``retry`` first, then an
``id`` with the start cursor on channels that keep history, message events (framed once
per message per process, ``sse.message_event``), ``gap`` events, keep-alives when idle,
and a final ``retry`` when the process drains.

Backpressure: a stream receives only when its consumer asks for the next chunk, that
is once the previous chunk was sent, so a slow client's backlog stays in its
subscription's inbox as shared ``Message`` objects, bounded by ``buffer_bytes`` (the
oldest go first, then a ``gap``). A chunk joins at most ``BATCH_MESSAGES`` messages or
about ``BATCH_BYTES``; after a full chunk an async stream yields to the event loop, so
no stream holds it for long, and a stream whose client left stops at the next chunk
instead of framing its backlog.

``StreamRegistry`` counts the open streams of the process (both paths together) for
``BROADCAST_STREAM_MAX_STREAMS`` and ends them all on ``drain()``. No Django imports.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import cast

from . import sse
from .channel import CursorSubscription, Message, Subscription
from .exceptions import BroadcastChannelError, SubscriptionClosedError

logger = logging.getLogger("broadcast_app")

#: Most messages joined into one chunk.
BATCH_MESSAGES = 64
#: A chunk stops growing once it holds this many bytes.
BATCH_BYTES = 64 * 1024
#: On drain, each stream's final ``retry`` is its usual one plus up to this many seconds,
#: at random, so the browsers of a restarted process come back spread over a window.
DRAIN_RETRY_SPREAD = 10.0


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How a stream behaves; the same for the view and the fast path."""

    #: Seconds of silence before a keep-alive comment.
    heartbeat: float
    #: Seconds the browser waits before reconnecting once the stream ends.
    retry: float
    #: Seconds a send may stay stalled before the stream ends (the ``"disconnect"``
    #: slow-client policy); None keeps the stream, dropping its oldest messages instead.
    stall_timeout: float | None = None


class StreamLimitError(Exception):
    """The process holds its maximum of open streams, or is draining."""


class OpenStream:
    """A stream counted by a ``StreamRegistry``; ``release()`` uncounts it. Thread-safe.

    ``final_retry`` is None until a drain sets it: the stream then ends with that
    ``retry``. ``on_stop`` callbacks (run in the thread that drains) let a path end a
    stream its subscription alone cannot, e.g. one blocked in a stalled send.
    """

    __slots__ = ("_registry", "alias", "final_retry", "on_stop", "subscription")

    def __init__(self, registry: StreamRegistry, subscription: Subscription, alias: str) -> None:
        self._registry = registry
        self.subscription = subscription
        #: The alias of the channel streamed from (for per-channel counts).
        self.alias = alias
        self.final_retry: float | None = None
        self.on_stop: Callable[[], object] | None = None

    def stop(self, retry: float) -> None:
        """End the stream: it sends ``retry`` (if it can still send) and finishes."""
        self.final_retry = retry
        self.subscription.close()
        if self.on_stop is not None:
            self.on_stop()

    def release(self) -> None:
        """Stop counting this stream. Idempotent."""
        self._registry.discard(self)


class StreamRegistry:
    """The open streams of a process: counted against a limit, ended by ``drain()``.

    Thread-safe: WSGI threads and the event loop share one registry.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[OpenStream] = set()
        self._per_alias: dict[str, int] = {}
        self._draining = False

    def __len__(self) -> int:
        return len(self._open)

    @property
    def draining(self) -> bool:
        """Whether ``drain()`` was called: no stream opens any more."""
        return self._draining

    def open(self, subscription: Subscription, limit: int | None, alias: str) -> OpenStream:
        """Count a new stream of ``subscription`` from channel ``alias``; ``limit`` is the
        most streams open at once, whatever their channel.

        Raises:
            StreamLimitError: ``limit`` streams are open, or the registry is draining.
        """
        with self._lock:
            if self._draining or (limit is not None and len(self._open) >= limit):
                raise StreamLimitError
            stream = OpenStream(self, subscription, alias)
            self._open.add(stream)
            self._per_alias[alias] = self._per_alias.get(alias, 0) + 1
            return stream

    def discard(self, stream: OpenStream) -> None:
        with self._lock:
            if stream in self._open:
                self._open.remove(stream)
                self._per_alias[stream.alias] -= 1

    def count(self, alias: str) -> int:
        """The open streams from channel ``alias``."""
        return self._per_alias.get(alias, 0)

    def drain(self, spread: float = DRAIN_RETRY_SPREAD) -> int:
        """End every open stream, and refuse new ones from now on; return how many.

        Each stream's final ``retry`` is its own plus ``uniform(0, spread)`` seconds.
        Never blocks on I/O; safe from any thread but not from a signal handler
        (it takes locks): hand it to the event loop or a thread from there.
        """
        with self._lock:
            self._draining = True
            streams = list(self._open)
        for stream in streams:
            stream.stop(random.uniform(0, spread))  # noqa: S311 - jitter, not secrecy.
        return len(streams)


#: The process's streams, on every path.
streams = StreamRegistry()


class EventStream:
    """The SSE body of one started subscription; iterate ``chunks()`` or ``achunks()``.

    Single consumer. Ends (the iterator finishes) when the subscription is closed — by
    the client leaving, a drain or the channel closing — or fails, e.g. a replay that
    cannot read Redis (logged as a warning): the browser reconnects after ``retry`` and
    resumes from the last ``id`` it received.
    """

    __slots__ = ("_gaps", "_keeps_history", "_live", "_options", "_stream", "_subscription")

    def __init__(
        self,
        subscription: Subscription,
        options: StreamOptions,
        stream: OpenStream,
        *,
        keeps_history: bool,
    ) -> None:
        self._subscription = subscription
        self._options = options
        self._stream = stream
        self._keeps_history = keeps_history
        self._gaps = subscription.gaps  # A gap before the stream began is no news to it.
        self._live = True

    def _opening(self) -> bytes:
        chunk = sse.retry(self._options.retry)
        if self._keeps_history:
            # The start position: a browser that drops before the first message resumes
            # from it and misses nothing.
            chunk += sse.event_id(_cursor(self._subscription))
        return chunk

    def _closing(self) -> bytes:
        final = self._stream.final_retry
        return b"" if final is None else sse.retry(self._options.retry + final)

    def _after_send(self, started: float) -> None:
        """End the stream if that send was stalled past the stall timeout."""
        stall = self._options.stall_timeout
        if stall is not None and time.monotonic() - started > stall:
            self._live = False

    def _failed(self, exc: BroadcastChannelError) -> None:
        self._live = False
        if not isinstance(exc, SubscriptionClosedError):
            logger.warning("Stopped streaming topic %r: %s", self._subscription.topic, exc)

    def chunks(self) -> Iterator[bytes]:
        """Yield the body's chunks, receiving only when the next one is asked for."""
        receive = self._subscription.receive_message
        yield self._opening()
        while self._live:
            chunk = _Chunk(self._options.heartbeat, self._gap_frame)
            try:
                while chunk.add(receive(chunk.timeout)):
                    pass
            except BroadcastChannelError as exc:
                self._failed(exc)
            if body := chunk.body(self._live):
                started = time.monotonic()
                yield body
                self._after_send(started)
        if closing := self._closing():
            yield closing

    async def achunks(self) -> AsyncGenerator[bytes]:
        """Async twin of ``chunks()``; yields to the event loop after every full chunk."""
        areceive = self._subscription.areceive_message
        yield self._opening()
        while self._live:
            chunk = _Chunk(self._options.heartbeat, self._gap_frame)
            try:
                while chunk.add(await areceive(chunk.timeout)):
                    pass
            except BroadcastChannelError as exc:
                self._failed(exc)
            if body := chunk.body(self._live):
                started = time.monotonic()
                yield body
                self._after_send(started)
                if chunk.full:
                    # A backlog: let other streams (and a disconnect) run before the next.
                    await asyncio.sleep(0)
        if closing := self._closing():
            yield closing

    def _gap_frame(self) -> bytes:
        gaps = self._subscription.gaps
        if gaps == self._gaps:
            return b""
        self._gaps = gaps
        return sse.GAP


class _Chunk:
    """One chunk of a stream's body, filled from one or more receives."""

    __slots__ = ("_frames", "_gap_frame", "_size", "timeout")

    def __init__(self, heartbeat: float, gap_frame: Callable[[], bytes]) -> None:
        self._gap_frame = gap_frame
        self._frames: list[bytes] = []
        self._size = 0
        #: The timeout of the next receive: the heartbeat for the first, then none.
        self.timeout = heartbeat

    @property
    def full(self) -> bool:
        return len(self._frames) >= BATCH_MESSAGES or self._size >= BATCH_BYTES

    def add(self, message: Message | None) -> bool:
        """Frame what a receive returned (None: nothing came); whether to receive more."""
        if message is None:
            return False
        if gap := self._gap_frame():
            self._frames.append(gap)
        frame = sse.message_event(message)
        self._frames.append(frame)
        self._size += len(frame)
        self.timeout = 0
        return not self.full

    def body(self, live: bool) -> bytes:
        """The bytes to send: the frames, else a keep-alive while the stream lives."""
        if self._frames:
            return b"".join(self._frames)
        return sse.KEEP_ALIVE if live else b""


def _cursor(subscription: Subscription) -> str:
    # A channel that keeps history gives cursor subscriptions (``features.keeps_history``).
    return cast(CursorSubscription, subscription).cursor
