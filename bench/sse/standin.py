"""A minimal raw-ASGI stream path on the async API: the harness's stand-in fast path.

Used only while ``broadcast_app.asgi`` does not exist, so that the benchmark can be
built and checked. It trusts any ``?token=``, frames with ``broadcast_app.sse``, races
the stream against ``http.disconnect``, and has no backpressure, limit or drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from broadcast_app import sse
from broadcast_app.conf import get_channel, stream_heartbeat

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/broadcast/"


def with_streams(application: ASGIApp) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(PREFIX)
            and b"token=" in scope["query_string"]
        ):
            await _stream(unquote(scope["path"][len(PREFIX) :]), receive, send)
        else:
            await application(scope, receive, send)

    return app


async def _stream(topic: str, receive: Receive, send: Send) -> None:
    heartbeat = stream_heartbeat()
    async with get_channel().topic(topic).subscribe() as subscription:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", sse.CONTENT_TYPE.encode())],
            }
        )
        await send({"type": "http.response.body", "body": sse.retry(3), "more_body": True})

        async def pump() -> None:
            while True:
                payload = await subscription.areceive(heartbeat)
                frame = sse.KEEP_ALIVE if payload is None else sse.payload_event(payload)
                await send({"type": "http.response.body", "body": frame, "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(disconnected())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
