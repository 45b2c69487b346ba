"""The Server-Sent Events view: stream one topic of a channel to a browser.

The view itself is synchronous, so authorizers may use the session and the ORM
under any server. The body it returns is an async iterator on the event loop under
ASGI — an open stream holds no thread of ours — and a plain iterator in the
server's request thread under WSGI. The subscription starts before the response is
returned: once the client has the response headers, every message published
afterwards reaches it.

On a channel that keeps history (``channel.features.keeps_history``, e.g. Redis
Streams) every
message event has its cursor as its ``id``, and a request carrying a
``Last-Event-ID`` header (or a ``last_event_id`` query parameter) first replays
what was published after it: a browser that reconnects misses nothing still
retained after the last event it received. Other backends have no history and
ignore both.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, cast

from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseForbidden,
    StreamingHttpResponse,
)
from django.views import View

from . import sse
from .channel import CursorTopic, Message, Subscription, Topic
from .conf import DEFAULT_CHANNEL_ALIAS, Authorizer, get_channel, load_authorizer
from .conf import stream_authorizer as configured_authorizer
from .conf import stream_heartbeat as configured_heartbeat
from .exceptions import BroadcastChannelError, SubscriptionClosedError

logger = logging.getLogger("broadcast_app")

NO_AUTHORIZER_MESSAGE = (
    "Streaming is refused: set BROADCAST_STREAM_AUTHORIZER to the dotted path of a "
    "function (request, topic) -> bool that allows it.\n"
)
REFUSED_MESSAGE = "You may not stream this topic.\n"
INVALID_LAST_EVENT_ID_MESSAGE = "Cannot resume after that last event ID: {error}\n"
UNAVAILABLE_MESSAGE = "The broadcast channel is unavailable; try again later.\n"

TEXT = "text/plain; charset=utf-8"
#: Most messages joined into one chunk when a subscriber has a backlog.
MAX_BATCH = 64


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response; closing it closes the subscription it streams.

    ``Content-Encoding: identity`` keeps ``GZipMiddleware`` (and similar compressors)
    out: a gzip stream holds small writes back, which would delay every event.
    """

    def __init__(
        self,
        streaming_content: Iterator[bytes] | AsyncIterator[bytes],
        subscription: Subscription,
    ) -> None:
        super().__init__(streaming_content, content_type=sse.CONTENT_TYPE)
        self.subscription = subscription
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"
        self["Content-Encoding"] = "identity"

    def close(self) -> None:
        try:
            self.subscription.close()
        finally:
            super().close()


class _EventStream:
    """What the sync and async loops share: receiving, framing and batching.

    Each call to ``add()`` frames what one receive returned into the pending chunk,
    announcing a new gap first; ``take()`` hands the chunk over. On a cursor-capable
    backend every message event carries its cursor as its ``id``.
    """

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription
        self._gaps = 0  # Counted from the subscription's start, which may precede the stream's.
        self._chunk: list[bytes] = []
        #: False once the subscription has ended or failed.
        self.live = True
        self.receive = subscription.receive_message
        self.areceive = subscription.areceive_message

    def add(self, received: Message | None) -> bool:
        """Frame what a receive returned (None: it timed out); whether to receive more
        into this chunk."""
        if received is None:
            if not self._chunk:
                self._append(sse.KEEP_ALIVE)
            return False
        self._append(sse.message_event(received))
        return len(self._chunk) < MAX_BATCH

    def _append(self, frame: bytes) -> None:
        gaps = self._subscription.gaps
        if gaps != self._gaps:
            self._gaps = gaps
            self._chunk.append(sse.GAP)
        self._chunk.append(frame)

    def take(self) -> bytes:
        """Return the pending chunk (possibly empty) and start a new one."""
        chunk, self._chunk = b"".join(self._chunk), []
        return chunk

    @contextlib.contextmanager
    def ending(self) -> Iterator[None]:
        """Mark the stream ended when the subscription is closed, or (with a warning)
        when the channel fails, e.g. a replay cannot read Redis: the browser reconnects
        after ``retry`` and resumes from the last ``id`` it received.
        """
        try:
            yield
        except SubscriptionClosedError:
            self.live = False
        except BroadcastChannelError as exc:
            self.live = False
            logger.warning("Stopped streaming topic %r: %s", self._subscription.topic, exc)


def sync_events(subscription: Subscription, heartbeat: float, retry: float) -> Iterator[bytes]:
    """Yield the SSE body of ``subscription`` until it is closed or the generator is."""
    with subscription:
        stream = _EventStream(subscription)
        yield sse.retry(retry)
        while stream.live:
            timeout = heartbeat
            with stream.ending():
                while stream.add(stream.receive(timeout)):
                    timeout = 0
            if chunk := stream.take():
                yield chunk


async def async_events(
    subscription: Subscription, heartbeat: float, retry: float
) -> AsyncIterator[bytes]:
    """Async twin of ``sync_events()``; cancellation closes the subscription."""
    async with subscription:
        stream = _EventStream(subscription)
        yield sse.retry(retry)
        while stream.live:
            timeout = heartbeat
            with stream.ending():
                while stream.add(await stream.areceive(timeout)):
                    timeout = 0
            if chunk := stream.take():
                yield chunk


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


class BroadcastStreamView(View):
    """Stream the messages of topic ``topic`` as Server-Sent Events.

    Answers 403 if no authorizer is configured, 400 for a topic name the channel
    rejects, 403 unless the authorizer allows the request, 400 for a last event ID
    a cursor-capable channel rejects (checked in that order), 503 if the channel
    cannot subscribe in time. A refused or invalid request never subscribes.
    Subclass it, or pass the attributes to ``as_view()``.
    """

    http_method_names = ["get", "options"]

    #: Alias in ``BROADCAST_CHANNELS`` of the channel to stream from.
    channel_alias: str = DEFAULT_CHANNEL_ALIAS
    #: ``authorizer(request, topic) -> bool`` (sync or async) or its dotted path;
    #: None means ``BROADCAST_STREAM_AUTHORIZER``.
    authorizer: Authorizer | str | None = None
    #: Seconds of silence before a keep-alive comment; None means
    #: ``BROADCAST_STREAM_HEARTBEAT``.
    heartbeat: float | None = None
    #: Seconds the browser waits before reconnecting once the stream ends.
    retry: float = 3.0

    def get_authorizer(self) -> Authorizer | None:
        """Return the authorizer in force, or None when none is configured.

        Raises:
            ImproperlyConfigured: the configured authorizer cannot be loaded.
        """
        # Static lookup: a plain function set as a class attribute must not become a method.
        value = inspect.getattr_static(self, "authorizer")
        if isinstance(value, staticmethod):
            value = value.__func__
        if value is None:
            return configured_authorizer()
        return load_authorizer(value)

    def is_authorized(self, authorizer: Authorizer, request: HttpRequest, topic: str) -> bool:
        """Ask ``authorizer``, awaiting its answer if it is async; only ``True`` allows."""
        allowed: object = authorizer(request, topic)
        if inspect.isawaitable(allowed):
            allowed = async_to_sync(_awaited)(allowed)
        return allowed is True

    def get_heartbeat(self) -> float:
        return configured_heartbeat() if self.heartbeat is None else float(self.heartbeat)

    def get_last_event_id(self, request: HttpRequest) -> str | None:
        """Return the cursor to resume after: the ``Last-Event-ID`` header, else the
        ``last_event_id`` query parameter; None if both are missing or empty.

        The header wins: ``EventSource`` sends it on every reconnection with the latest
        ``id`` it received, while the query parameter stays fixed in the URL (a page
        that starts a stream anew passes there the ``id`` it kept).
        """
        return request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or None

    def subscribe(self, request: HttpRequest, topic: Topic) -> Subscription:
        """Return a new, not yet started, subscription to ``topic``; on a cursor-capable
        channel, from the request's last event ID. No I/O.

        Raises:
            TypeError, ValueError: the last event ID is not a cursor of the channel.
        """
        if get_channel(self.channel_alias).features.keeps_history:
            return cast(CursorTopic, topic).subscribe(cursor=self.get_last_event_id(request))
        return topic.subscribe()  # No history, so nothing to resume from.

    def get(self, request: HttpRequest, topic: str, **kwargs: Any) -> HttpResponseBase:
        authorizer = self.get_authorizer()
        if authorizer is None:
            return HttpResponseForbidden(NO_AUTHORIZER_MESSAGE, content_type=TEXT)
        try:
            channel_topic = get_channel(self.channel_alias).topic(topic)
        except (TypeError, ValueError) as exc:
            return HttpResponseBadRequest(f"{exc}\n", content_type=TEXT)
        if not self.is_authorized(authorizer, request, topic):
            return HttpResponseForbidden(REFUSED_MESSAGE, content_type=TEXT)
        heartbeat = self.get_heartbeat()
        try:
            subscription = self.subscribe(request, channel_topic)
        except (TypeError, ValueError) as exc:
            message = INVALID_LAST_EVENT_ID_MESSAGE.format(error=exc)
            return HttpResponseBadRequest(message, content_type=TEXT)
        try:
            subscription.__enter__()  # Started here; the stream's own ``with`` finds it so.
        except BroadcastChannelError as exc:
            subscription.close()
            logger.warning("Could not stream topic %r: %s", topic, exc)
            return HttpResponse(
                UNAVAILABLE_MESSAGE,
                status=503,
                content_type=TEXT,
                headers={"Retry-After": str(math.ceil(self.retry))},
            )
        if isinstance(request, ASGIRequest):
            content: Iterator[bytes] | AsyncIterator[bytes] = async_events(
                subscription, heartbeat, self.retry
            )
        else:
            content = sync_events(subscription, heartbeat, self.retry)
        return EventStreamResponse(content, subscription)
