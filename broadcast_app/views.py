"""The Server-Sent Events view: stream one topic of a channel to a browser.

The view itself is synchronous, so authorizers may use the session and the ORM
under any server. The body it returns is an async iterator on the event loop under
ASGI and a plain iterator in the server's request thread under WSGI; both come from
``streaming.EventStream`` (backpressure, batching, heartbeats, ``gap``, drain). The
subscription starts before the response is returned: once the client has the
response headers, every message published afterwards reaches it.

Under ASGI an open stream still holds a thread of Django's handler (its request runs
in a thread-sensitive context for the middleware and this sync view); wrap the ASGI
application with ``broadcast_app.asgi.with_streams()`` to serve token-carrying streams
on the event loop instead. Django reports client disconnects under ASGI from 5.0 on.

On a channel that keeps history (``channel.features.keeps_history``, e.g. Redis
Streams) the stream first sends an ``id`` with its start position, every message event
has its cursor as its ``id``, and a request carrying a ``Last-Event-ID`` header (or a
``last_event_id`` query parameter) first replays what was published after it: a
browser that reconnects misses nothing still retained. Other backends ignore both.
"""

from __future__ import annotations

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
from django.views.decorators.csrf import csrf_exempt

from . import metrics, sse, tokens
from .channel import CursorTopic, Subscription, Topic
from .conf import DEFAULT_CHANNEL_ALIAS, Authorizer, get_channel, load_authorizer
from .conf import stream_authorizer as configured_authorizer
from .conf import stream_buffer_bytes as configured_buffer_bytes
from .conf import stream_heartbeat as configured_heartbeat
from .conf import stream_max_streams as configured_max_streams
from .conf import stream_stall_timeout as configured_stall_timeout
from .exceptions import BroadcastChannelError
from .streaming import EventStream, OpenStream, StreamLimitError, StreamOptions, streams
from .topic_urls import check_url_topic, decode_path

logger = logging.getLogger("broadcast_app")
# The metrics read the open streams of each channel from the registry of both paths.
metrics.open_streams = streams.count

NO_AUTHORIZER_MESSAGE = (
    "Streaming is refused: set BROADCAST_STREAM_AUTHORIZER to the dotted path of a "
    "function (request, topic) -> bool that allows it.\n"
)
REFUSED_MESSAGE = "You may not stream this topic.\n"
INVALID_LAST_EVENT_ID_MESSAGE = "Cannot resume after that last event ID: {error}\n"
UNAVAILABLE_MESSAGE = "The broadcast channel is unavailable; try again later.\n"
BUSY_MESSAGE = "This server holds all the streams it may; try again later.\n"

INVALID_UTF8_MESSAGE = "The URL's path is not valid UTF-8 once percent-decoded.\n"

TEXT = "text/plain; charset=utf-8"
#: The headers of every stream response, on every path.
STREAM_HEADERS = {
    "Content-Type": sse.CONTENT_TYPE,
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # Keeps GZipMiddleware (and similar compressors) out: a gzip stream holds small
    # writes back, which would delay every event.
    "Content-Encoding": "identity",
}


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response; closing it closes the subscription it streams
    and uncounts the stream."""

    def __init__(
        self,
        streaming_content: Iterator[bytes] | AsyncIterator[bytes],
        subscription: Subscription,
        stream: OpenStream | None = None,
    ) -> None:
        super().__init__(streaming_content, headers=STREAM_HEADERS)
        self.subscription = subscription
        self.stream = stream

    def close(self) -> None:
        try:
            self.subscription.close()
            if self.stream is not None:
                self.stream.release()
        finally:
            super().close()


def retry_after(retry: float) -> str:
    """The ``Retry-After`` of a 503: the stream's ``retry`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(retry)))


def unavailable(message: str, retry: float) -> HttpResponse:
    """A 503 answer that tells the client when to try again."""
    return HttpResponse(
        message, status=503, content_type=TEXT, headers={"Retry-After": retry_after(retry)}
    )


def path_is_utf8(request: HttpRequest) -> bool:
    """Whether the request's path, percent-decoded, is valid UTF-8.

    Under ASGI the server decoded the path leniently (uvicorn: into U+FFFD), so this
    reads the scope's ``raw_path``. Under WSGI, Django turned invalid sequences back
    into ``%XX``, which ``check_url_topic()`` refuses (see ``topic_urls``).
    """
    raw_path = request.scope.get("raw_path") if isinstance(request, ASGIRequest) else None
    if raw_path is None:
        return True
    try:
        decode_path(raw_path)
    except ValueError:
        return False
    return True


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


class BroadcastStreamView(View):
    """Stream the messages of topic ``topic`` as Server-Sent Events.

    Answers, checked in this order: 400 for a path that is not UTF-8 or a topic name
    the channel rejects or a URL cannot carry (``topic_urls``); 403 for a ``token``
    that does not authorize this topic and channel, or without a token unless the
    authorizer allows the request (none configured: 403); 400 for a last event ID a
    cursor-capable channel rejects; 503 with ``Retry-After`` when the process holds
    ``BROADCAST_STREAM_MAX_STREAMS`` streams, is draining, or the channel cannot
    subscribe in time. A refused or invalid request never subscribes. Only GET (and
    OPTIONS) are allowed, without CSRF checks: a stream changes nothing.

    Subclass it, or pass the attributes to ``as_view()``. The ASGI fast path
    (``broadcast_app.asgi``) honours ``channel_alias``, ``heartbeat`` and ``retry`` and
    the methods that take no request; methods that take one run on the Django path only.
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

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # A POST must get 405, not CsrfViewMiddleware's 403.
        return csrf_exempt(super().as_view(**initkwargs))

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

    def get_stream_options(self) -> StreamOptions:
        """The stream's heartbeat, retry and slow-client policy, from the view and settings."""
        return StreamOptions(self.get_heartbeat(), self.retry, configured_stall_timeout())

    def get_last_event_id(self, request: HttpRequest) -> str | None:
        """Return the cursor to resume after: the ``Last-Event-ID`` header, else the
        ``last_event_id`` query parameter; None if both are missing or empty.

        The header wins: ``EventSource`` sends it on every reconnection with the latest
        ``id`` it received, while the query parameter stays fixed in the URL (a page
        that starts a stream anew passes there the ``id`` it kept).
        """
        return request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or None

    def get_topic(self, topic: str) -> Topic:
        """Return the channel's topic named ``topic``. No I/O.

        Raises:
            TypeError, ValueError: the channel rejects the name, or a URL cannot carry it.
        """
        channel_topic = get_channel(self.channel_alias).topic(topic)
        check_url_topic(topic)
        return channel_topic

    def subscribe(self, topic: Topic, last_event_id: str | None) -> Subscription:
        """Return a new, not yet started, subscription to ``topic``, its pending bytes
        bounded by ``BROADCAST_STREAM_BUFFER_BYTES``; on a cursor-capable channel, from
        ``last_event_id``. No I/O.

        Raises:
            TypeError, ValueError: the last event ID is not a cursor of the channel.
        """
        buffer_bytes = configured_buffer_bytes()
        if get_channel(self.channel_alias).features.keeps_history:
            return cast(CursorTopic, topic).subscribe(last_event_id, buffer_bytes=buffer_bytes)
        return topic.subscribe(buffer_bytes=buffer_bytes)  # No history to resume from.

    def refuse(self, request: HttpRequest, topic: str) -> HttpResponseBase | None:
        """Return the 403 answer if the request may not stream ``topic``, else None.

        A ``token`` query parameter decides alone: valid for exactly this topic and
        channel alias, it allows without asking the authorizer; any other token refuses.
        Without one, the authorizer decides (none configured: refused).
        """
        token = request.GET.get(tokens.QUERY_PARAMETER)
        if token is not None:
            try:
                tokens.check_stream_token(token, topic, channel=self.channel_alias)
            except tokens.StreamTokenError as exc:
                return HttpResponseForbidden(str(exc), content_type=TEXT)
            return None
        authorizer = self.get_authorizer()
        if authorizer is None:
            return HttpResponseForbidden(NO_AUTHORIZER_MESSAGE, content_type=TEXT)
        if not self.is_authorized(authorizer, request, topic):
            return HttpResponseForbidden(REFUSED_MESSAGE, content_type=TEXT)
        return None

    def get(self, request: HttpRequest, topic: str, **kwargs: Any) -> HttpResponseBase:
        if not path_is_utf8(request):
            return HttpResponseBadRequest(INVALID_UTF8_MESSAGE, content_type=TEXT)
        try:
            channel_topic = self.get_topic(topic)
        except (TypeError, ValueError) as exc:
            return HttpResponseBadRequest(f"{exc}\n", content_type=TEXT)
        if (refusal := self.refuse(request, topic)) is not None:
            return refusal
        try:
            subscription = self.subscribe(channel_topic, self.get_last_event_id(request))
        except (TypeError, ValueError) as exc:
            message = INVALID_LAST_EVENT_ID_MESSAGE.format(error=exc)
            return HttpResponseBadRequest(message, content_type=TEXT)
        return self.stream(request, subscription)

    def stream(self, request: HttpRequest, subscription: Subscription) -> HttpResponseBase:
        """Start ``subscription`` and return the response streaming it, or a 503."""
        options = self.get_stream_options()
        try:
            stream = streams.open(subscription, configured_max_streams(), self.channel_alias)
        except StreamLimitError:
            return unavailable(BUSY_MESSAGE, self.retry)
        try:
            subscription.__enter__()  # Started here: the response subscribes no later.
        except BroadcastChannelError as exc:
            subscription.close()
            stream.release()
            logger.warning("Could not stream topic %r: %s", subscription.topic, exc)
            return unavailable(UNAVAILABLE_MESSAGE, self.retry)
        keeps_history = get_channel(self.channel_alias).features.keeps_history
        events = EventStream(subscription, options, stream, keeps_history=keeps_history)
        content = events.achunks() if isinstance(request, ASGIRequest) else events.chunks()
        return EventStreamResponse(content, subscription, stream)
