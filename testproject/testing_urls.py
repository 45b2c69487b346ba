"""The project's URLs plus endpoints only the tests use; never served by ``make demo``.

Served when ``DJANGO_ROOT_URLCONF=testproject.testing_urls``:

- ``testing/idle-stream/``: a trivial async SSE stream, the baseline the stream
  view's thread use is measured by.
- ``testing/client/``: an empty page with ``broadcast.js`` loaded as
  ``window.broadcast``, for browser tests to drive.
- ``testing/metrics``: the Prometheus metrics, through django-prometheus's view.
- ``testing/script/<key>?responses=<JSON>``: answers the n-th request for ``key`` with
  the n-th of ``responses`` (the last one repeats), each
  ``{"status": 200, "headers": {}, "chunks": [], "hold": false}``: a 200 streams
  ``chunks`` as separate writes, then ends unless ``hold``. ``.../attempts`` lists
  each request's arrival (``time.time()``) and ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.templatetags.static import static
from django.urls import include, path

from .urls import urlpatterns as project_urlpatterns

#: Seconds between the chunks of a scripted stream, so that each arrives on its own.
CHUNK_INTERVAL = 0.02
#: Seconds between keep-alives of idle and held streams.
KEEP_ALIVE_INTERVAL = 15.0

#: The requests each script key has had, in arrival order.
attempts: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)


async def keep_alives() -> AsyncIterator[bytes]:
    while True:
        yield b": idle\n\n"
        await asyncio.sleep(KEEP_ALIVE_INTERVAL)


async def idle_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(keep_alives(), content_type="text/event-stream")


def client_page(request: HttpRequest) -> HttpResponse:
    script = static("broadcast_app/broadcast.js")
    return HttpResponse(
        "<!doctype html><meta charset=utf-8><title>broadcast.js</title>"
        f'<script type="module">import * as m from "{script}"; window.broadcast = m;</script>'
    )


async def scripted_chunks(chunks: list[str], hold: bool) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk.encode()
        await asyncio.sleep(CHUNK_INTERVAL)
    if hold:
        async for keep_alive in keep_alives():
            yield keep_alive


async def scripted_stream(request: HttpRequest, key: str) -> HttpResponse:
    responses: list[dict[str, Any]] = json.loads(request.GET["responses"])
    seen = attempts[key]
    seen.append({"at": time.time(), "last_event_id": request.headers.get("Last-Event-ID")})
    script = responses[min(len(seen), len(responses)) - 1]
    status = script.get("status", 200)
    headers = script.get("headers", {})
    if status != 200:
        return HttpResponse(f"Scripted {status}.\n", status=status, headers=headers)
    # Identity: GZipMiddleware would otherwise hold the chunks back.
    headers = {"Content-Type": "text/event-stream", "Content-Encoding": "identity", **headers}
    body = scripted_chunks(script.get("chunks", []), script.get("hold", False))
    return StreamingHttpResponse(body, headers=headers)


def script_attempts(request: HttpRequest, key: str) -> JsonResponse:
    return JsonResponse(attempts[key], safe=False)


urlpatterns = [
    *project_urlpatterns,
    path("testing/idle-stream/", idle_stream),
    path("testing/client/", client_page),
    path("testing/", include("django_prometheus.urls")),
    path("testing/script/<str:key>", scripted_stream),
    path("testing/script/<str:key>/attempts", script_attempts),
]
