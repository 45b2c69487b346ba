"""The Server-Sent Events view: stream one topic of a channel to a browser.

The view itself is synchronous, so authorizers may use the session and the ORM
under any server. The body it returns is an async iterator on the event loop under
ASGI — an open stream holds no thread of ours — and a plain iterator in the
server's request thread under WSGI. The subscription starts before the response is
returned: once the client has the response headers, every message published
afterwards reaches it.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

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
from .backends.base import validate_topic_name
from .backends.subscription import ChannelSubscription
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
        subscription: ChannelSubscription,
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


class _Framer:
    """Turns what a subscription yields into SSE bytes, announcing each new gap first."""

    def __init__(self, subscription: ChannelSubscription) -> None:
        self._subscription = subscription
        self._gaps = 0  # Counted from the subscription's start, which may precede the stream's.

    def frame(self, payload: bytes | None) -> bytes:
        """Frame a payload, or a keep-alive for None."""
        body = sse.KEEP_ALIVE if payload is None else sse.payload_event(payload)
        gaps = self._subscription.gaps
        if gaps == self._gaps:
            return body
        self._gaps = gaps
        return sse.GAP + body


def sync_events(
    subscription: ChannelSubscription, heartbeat: float, retry: float
) -> Iterator[bytes]:
    """Yield the SSE body of ``subscription`` until it is closed or the generator is."""
    with subscription:
        framer = _Framer(subscription)
        yield sse.retry(retry)
        while True:
            try:
                payload = subscription.receive(timeout=heartbeat)
                chunk = [framer.frame(payload)]
                while payload is not None and len(chunk) < MAX_BATCH:
                    payload = subscription.receive(timeout=0)
                    if payload is not None:
                        chunk.append(framer.frame(payload))
            except SubscriptionClosedError:
                return
            yield b"".join(chunk)


async def async_events(
    subscription: ChannelSubscription, heartbeat: float, retry: float
) -> AsyncIterator[bytes]:
    """Async twin of ``sync_events()``; cancellation closes the subscription."""
    async with subscription:
        framer = _Framer(subscription)
        yield sse.retry(retry)
        while True:
            try:
                payload = await subscription.areceive(timeout=heartbeat)
                chunk = [framer.frame(payload)]
                while payload is not None and len(chunk) < MAX_BATCH:
                    payload = await subscription.areceive(timeout=0)
                    if payload is not None:
                        chunk.append(framer.frame(payload))
            except SubscriptionClosedError:
                return
            yield b"".join(chunk)


async def _resolve(awaitable: Awaitable[object]) -> object:
    return await awaitable


class BroadcastStreamView(View):
    """Stream the messages of topic ``topic`` as Server-Sent Events.

    Answers 403 unless an authorizer allows the request, 400 for a topic name the
    channel rejects, 503 if the channel cannot subscribe in time. A refused or
    invalid request never subscribes. Subclass it, or pass the attributes to
    ``as_view()``.
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
            allowed = async_to_sync(_resolve)(allowed)
        return allowed is True

    def get_heartbeat(self) -> float:
        return configured_heartbeat() if self.heartbeat is None else float(self.heartbeat)

    def get(self, request: HttpRequest, topic: str, **kwargs: Any) -> HttpResponseBase:
        authorizer = self.get_authorizer()
        if authorizer is None:
            return HttpResponseForbidden(NO_AUTHORIZER_MESSAGE, content_type=TEXT)
        try:
            validate_topic_name(topic)
        except (TypeError, ValueError) as exc:
            return HttpResponseBadRequest(f"{exc}\n", content_type=TEXT)
        if not self.is_authorized(authorizer, request, topic):
            return HttpResponseForbidden(REFUSED_MESSAGE, content_type=TEXT)
        heartbeat = self.get_heartbeat()
        subscription = get_channel(self.channel_alias).topic(topic).subscribe()
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
