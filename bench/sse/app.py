"""The ASGI application the benchmark serves: testproject behind the stream fast path.

Requests to a stream URL carrying ``?token=`` take the fast path; all others (the
Django view included) reach Django's ASGI handler. ``FLOOR_PATH`` answers an endless
event stream that sends nothing and subscribes to nothing: what uvicorn itself holds
per open response, the floor under both paths.
"""

import os
from typing import cast

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.sse.settings")

from broadcast_app.asgi import ASGIApp, Receive, Scope, Send, with_streams  # Once settings.

from .paths import FLOOR_PATH


async def _floor(receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass


def _with_floor(application: ASGIApp) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == FLOOR_PATH:
            await _floor(receive, send)
        else:
            await application(scope, receive, send)

    return app


application = _with_floor(with_streams(cast(ASGIApp, get_asgi_application())))
