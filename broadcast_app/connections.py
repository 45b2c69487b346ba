"""Dropping a stream's connection, where the ASGI server lets the application reach it.

ASGI has no message that aborts a response. Ending an ASGI call with an incomplete one
makes uvicorn close the transport gracefully: it waits to flush its write buffer first,
which for a client that stopped reading is never, so the connection stays open and
holds up the server's shutdown. Under uvicorn, ``send`` is a bound method of the
request's cycle, which holds the asyncio transport: aborting that transport drops the
connection at once, with a reset (``SO_LINGER`` 0), so that the kernel discards the
unsent bytes too rather than keep trying to deliver them. This is duck-typed and
uvicorn-specific; elsewhere ``dropper()`` returns None and the caller falls back on what
ASGI offers.

``with_streams()`` notes the ``send`` of every request it passes on to Django
(``remember()``), in the request's context: the view's stream, which Django's handler
sends without showing ``send`` to it, finds it there (``dropper()`` without arguments).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

#: The event loop and ASGI ``send`` of the request handled in this context.
_current: ContextVar[tuple[asyncio.AbstractEventLoop, object] | None] = ContextVar(
    "broadcast_app_connection", default=None
)
#: ``SO_LINGER`` on, for 0 s: closing resets the connection.
_NO_LINGER = struct.pack("ii", 1, 0)


def remember(send: object) -> None:
    """Note ``send`` as the current request's, for ``dropper()`` in this context and the
    contexts copied from it (tasks, and threads of ``sync_to_async``). Call it on the
    event loop, before the application handles the request."""
    _current.set((asyncio.get_running_loop(), send))


def dropper(
    send: object | None = None, loop: asyncio.AbstractEventLoop | None = None
) -> Callable[[], None] | None:
    """A callable dropping the connection ``send`` answers on (by default the one
    ``remember()`` noted), or None if the server offers no way to.

    The callable is thread-safe and never blocks: it hands the abort to ``loop`` (by
    default the running one, or the one ``remember()`` noted), and does nothing once
    that loop is closed.
    """
    if send is None:
        current = _current.get()
        if current is None:
            return None
        loop, send = current
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not callable(getattr(transport, "abort", None)):
        return None
    target = asyncio.get_running_loop() if loop is None else loop

    def drop() -> None:
        with contextlib.suppress(RuntimeError):  # The loop is closed: so is the connection.
            target.call_soon_threadsafe(_reset, transport)

    return drop


def _reset(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # Already closed: the abort does nothing either.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
    transport.abort()
