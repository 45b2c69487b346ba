"""URLs of the test and demo project."""

import asyncio
from collections.abc import AsyncIterator

from django.http import HttpRequest, StreamingHttpResponse
from django.urls import include, path


async def idle_stream(request: HttpRequest) -> StreamingHttpResponse:
    """A trivial async SSE stream: the baseline the stream view's thread use is measured by."""

    async def keep_alives() -> AsyncIterator[bytes]:
        while True:
            yield b": idle\n\n"
            await asyncio.sleep(15)

    return StreamingHttpResponse(keep_alives(), content_type="text/event-stream")


urlpatterns = [
    path("", include("testproject.demo.urls")),
    path("broadcast/", include("broadcast_app.urls")),
    # Test-only.
    path("testing/idle-stream/", idle_stream),
]
