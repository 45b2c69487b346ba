"""The ASGI fast path: token-carrying stream requests served on the event loop.

``with_streams(get_asgi_application())`` wraps Django's ASGI application. A GET for
a stream URL (any path the URLconf resolves to ``BroadcastStreamView`` or a subclass,
under any ``root_path``) that carries a ``token`` query parameter is served here: no
Django request, no middleware, no thread; an open stream costs a task and its
subscription. Everything else, lifespan included, goes to ``application``.

The answers and the wire format are the view's (``views``, ``streaming``): 400 for a
topic the channel rejects or a URL cannot carry or a bad ``Last-Event-ID``; 403 with a
short reason for a token that does not authorize exactly this topic and the view's
channel alias (the authorizer is never asked); 503 with ``Retry-After`` when the
process is at ``BROADCAST_STREAM_MAX_STREAMS``, draining, or the channel cannot
subscribe. The view's ``channel_alias``, ``heartbeat`` and ``retry`` (class attributes
or ``as_view()`` arguments) apply. A path that is not valid UTF-8 goes to Django,
whose view answers 400.

A stream ends at once when the client disconnects (``http.disconnect`` closes its
subscription: the backlog is never framed), when a send stays stalled past
``BROADCAST_STREAM_STALL_TIMEOUT`` under the ``"disconnect"`` slow-client policy
(the response is left incomplete, so the server drops the connection), and on
``drain()``.

Draining: on its first call the wrapper chains a handler for SIGTERM and SIGINT in
front of the server's own (uvicorn's, gunicorn's uvicorn worker's, hypercorn's...).
The handler hands ``drain()`` to the event loop, then calls the server's handler:
every stream, on both paths, ends with a jittered final ``retry`` before the server
starts waiting for open connections, so it exits promptly. Servers that handle
signals otherwise can call ``drain()`` themselves. See docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import types
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from django.urls import Resolver404, resolve

from . import tokens, views
from .conf import get_channel
from .conf import stream_max_streams as configured_max_streams
from .exceptions import BroadcastChannelError
from .streaming import (
    DRAIN_RETRY_SPREAD,
    EventStream,
    OpenStream,
    StreamLimitError,
    StreamOptions,
    streams,
)
from .topic_urls import decode_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: The application wrapped: typed loosely, so that Django's ``ASGIHandler`` (whose scope is
#: a ``dict``) and any other ASGI 3 callable fit.
WrappedApp = Callable[[Any, Any, Any], Awaitable[object]]

#: Seconds a draining stream may still spend sending before it is cut off.
DRAIN_GRACE = 1.0
_TEXT_HEADERS = [(b"content-type", views.TEXT.encode())]
_STREAM_HEADERS = [
    (name.lower().encode(), value.encode()) for name, value in views.STREAM_HEADERS.items()
]


def drain(spread: float = DRAIN_RETRY_SPREAD) -> int:
    """End every open stream of the process (both paths) and refuse new ones (503).

    Each stream sends a final ``retry`` of its own plus ``uniform(0, spread)`` seconds.
    Returns the number of streams ended. Thread-safe; call it from the server's
    shutdown hook if it does not deliver SIGTERM/SIGINT to Python handlers.
    """
    return streams.drain(spread)


def with_streams(application: WrappedApp) -> ASGIApp:
    """Return an ASGI application serving token-carrying stream requests itself and
    passing everything else to ``application``."""
    return _StreamsApplication(application)


class _StreamsApplication:
    def __init__(self, application: WrappedApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _hook_signals(asyncio.get_running_loop())
        if scope["type"] == "http" and scope["method"] == "GET":
            request = _StreamRequest.parse(scope)
            if request is not None:
                await request.serve(receive, send)
                return
        await self.application(scope, receive, send)


class _StreamRequest:
    """A GET for a stream URL with a token: the view it resolves to, and the query."""

    __slots__ = ("last_event_id", "token", "topic", "view")

    def __init__(self, view: views.BroadcastStreamView, topic: str, query: dict[str, str]):
        self.view = view
        self.topic = topic
        self.token = query[tokens.QUERY_PARAMETER]
        self.last_event_id = query.get("last_event_id") or None

    @classmethod
    def parse(cls, scope: Scope) -> _StreamRequest | None:
        """The stream request ``scope`` holds, or None if it is for Django."""
        query_string: bytes = scope.get("query_string", b"")
        if tokens.QUERY_PARAMETER.encode() not in query_string:
            return None  # Cheap: most requests stop here.
        query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        if tokens.QUERY_PARAMETER not in query:
            return None
        path = _path_info(scope)
        resolved = None if path is None else _resolve_stream(path)
        if resolved is None:
            return None
        request = cls(*resolved, query)
        header = _header(scope, b"last-event-id")
        if header:  # The header wins, as on the view.
            request.last_event_id = header
        return request

    async def serve(self, receive: Receive, send: Send) -> None:
        view = self.view
        try:
            topic = view.get_topic(self.topic)
            tokens.check_stream_token(self.token, self.topic, channel=view.channel_alias)
        except (TypeError, ValueError) as exc:  # StreamTokenError is a ValueError.
            status = 403 if isinstance(exc, tokens.StreamTokenError) else 400
            await _answer(send, status, str(exc).rstrip("\n") + "\n")
            return
        options = view.get_stream_options()
        try:
            subscription = view.subscribe(topic, self.last_event_id)
        except (TypeError, ValueError) as exc:
            await _answer(send, 400, views.INVALID_LAST_EVENT_ID_MESSAGE.format(error=exc))
            return
        try:
            stream = streams.open(subscription, configured_max_streams(), view.channel_alias)
        except StreamLimitError:
            await _answer(send, 503, views.BUSY_MESSAGE, view.retry)
            return
        try:
            await _serve_stream(stream, options, view, receive, send)
        finally:
            subscription.close()
            stream.release()


async def _serve_stream(
    stream: OpenStream,
    options: StreamOptions,
    view: views.BroadcastStreamView,
    receive: Receive,
    send: Send,
) -> None:
    subscription = stream.subscription
    try:
        await subscription.__aenter__()
    except BroadcastChannelError as exc:
        views.logger.warning("Could not stream topic %r: %s", subscription.topic, exc)
        await _answer(send, 503, views.UNAVAILABLE_MESSAGE, view.retry)
        return
    keeps_history = get_channel(view.channel_alias).features.keeps_history
    events = EventStream(subscription, options, stream, keeps_history=keeps_history)
    await send({"type": "http.response.start", "status": 200, "headers": _STREAM_HEADERS})
    # The client leaving closes the subscription: the body ends at its next receive,
    # without framing the backlog.
    listener = asyncio.create_task(_close_on_disconnect(receive, stream))
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as cut_off:
            stream.on_stop = lambda: loop.call_soon_threadsafe(_cut_off_soon, cut_off, loop)
            async with contextlib.aclosing(events.achunks()) as chunks:
                async for chunk in chunks:
                    if chunk:
                        async with asyncio.timeout(options.stall_timeout):
                            await send(_body(chunk, more=True))
            await send(_body(b"", more=False))
    except TimeoutError:
        # Stalled past the stall timeout, or draining past the grace: the response stays
        # incomplete, which makes the server drop the connection.
        pass
    except OSError:
        pass  # Servers may raise from send() once the client is gone (ASGI 2.4).
    finally:
        stream.on_stop = None
        listener.cancel()


async def _close_on_disconnect(receive: Receive, stream: OpenStream) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.subscription.close()


def _cut_off_soon(cut_off: asyncio.Timeout, loop: asyncio.AbstractEventLoop) -> None:
    """Give a draining stream ``DRAIN_GRACE`` seconds more, in case a send is stalled."""
    with contextlib.suppress(RuntimeError):  # The stream has finished meanwhile.
        when = cut_off.when()
        deadline = loop.time() + DRAIN_GRACE
        cut_off.reschedule(deadline if when is None else min(when, deadline))


def _body(chunk: bytes, *, more: bool) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def _answer(send: Send, status: int, text: str, retry: float | None = None) -> None:
    headers = list(_TEXT_HEADERS)
    if retry is not None:
        headers.append((b"retry-after", views.retry_after(retry).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send(_body(text.encode(), more=False))


def _path_info(scope: Scope) -> str | None:
    """The path below ``root_path``, strictly decoded; None if it is not UTF-8 (Django's
    view answers 400)."""
    raw_path = scope.get("raw_path")
    try:
        path: str = scope["path"] if raw_path is None else decode_path(raw_path)
    except ValueError:
        return None
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return path


def _resolve_stream(path: str) -> tuple[views.BroadcastStreamView, str] | None:
    """The stream view (configured as in the URLconf) and topic of ``path``, if any."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    topic = match.kwargs.get("topic")
    if not (isinstance(view_class, type) and issubclass(view_class, views.BroadcastStreamView)):
        return None
    if not isinstance(topic, str):
        return None
    return view_class(**getattr(match.func, "view_initkwargs", {})), topic


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


# -- Draining on SIGTERM / SIGINT ------------------------------------------------------------

_hooked_lock = threading.Lock()
_hooked = False


def _hook_signals(loop: asyncio.AbstractEventLoop) -> None:
    """Chain a drain in front of the SIGTERM/SIGINT handlers, once per process.

    Only the main thread may set handlers; elsewhere (a server running the loop in
    another thread) nothing is hooked and ``drain()`` is the way.
    """
    global _hooked  # noqa: PLW0603 - once per process, like the handlers themselves.
    if _hooked or threading.current_thread() is not threading.main_thread():
        return
    with _hooked_lock:
        if _hooked:
            return
        _hooked = True
        for signum in (signal.SIGTERM, signal.SIGINT):
            _chain(signum, loop)


def _chain(signum: int, loop: asyncio.AbstractEventLoop) -> None:
    previous = signal.getsignal(signum)

    def handle(received: int, frame: types.FrameType | None) -> None:
        # drain() takes locks the interrupted code may hold: run it on the loop.
        with contextlib.suppress(RuntimeError):  # The loop is closed: nothing to drain.
            loop.call_soon_threadsafe(drain)
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(received, signal.SIG_DFL)
            signal.raise_signal(received)

    signal.signal(signum, handle)
