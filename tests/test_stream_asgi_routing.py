"""What ``with_streams`` takes for itself and what it hands on, called in-process with ASGI
scopes (the in-memory channel): token streams under any ``root_path``, everything else —
lifespan, other URLs, requests without a token, other methods — to the wrapped application."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.urls import reverse

from broadcast_app.asgi import with_streams
from broadcast_app.tokens import stream_url

MEMORY = {"BACKEND": "broadcast_app.backends.memory.InMemoryBroadcastChannel"}


@pytest.fixture(autouse=True)
def memory_settings(settings: Any) -> Any:
    settings.BROADCAST_CHANNELS = {"default": MEMORY}
    settings.BROADCAST_STREAM_HEARTBEAT = 0.05
    return settings


class Inner:
    """The wrapped application: records the scopes it is given."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)


def http_scope(url: str, *, root_path: str = "", method: str = "GET") -> dict[str, Any]:
    path, _, query = url.partition("?")
    return {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "raw_path": path.encode(),  # As uvicorn gives it: without root_path.
        "root_path": root_path,
        "query_string": query.encode(),
        "headers": [],
    }


async def serve(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one request until its first body chunk, then disconnect; return what was sent."""
    sent: list[dict[str, Any]] = []
    requested, first_body = False, asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await first_body.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            first_body.set()

    await asyncio.wait_for(app(scope, receive, send), 5.0)
    return sent


@pytest.mark.parametrize("root_path", ["", "/mounted/here"])
def test_token_streams_are_served_under_any_root_path(root_path: str) -> None:
    inner = Inner()
    sent = asyncio.run(serve(with_streams(inner), http_scope(stream_url("x"), root_path=root_path)))
    assert inner.scopes == []
    assert sent[0]["status"] == 200
    assert sent[1]["body"].startswith(b"retry: 3000\n\n")


@pytest.mark.parametrize(
    "scope",
    [
        {"type": "lifespan"},
        http_scope("/elsewhere/?token=x"),
        http_scope(reverse("broadcast_app:stream", kwargs={"topic": "x"})),
        http_scope(stream_url("x"), method="POST"),
        http_scope(stream_url("x").replace("token=", "tokens=")),
        http_scope("/broadcast/a%FFb?token=x"),  # Not UTF-8: Django's view answers 400.
    ],
    ids=["lifespan", "other URL", "no token", "POST", "other parameter", "not UTF-8"],
)
def test_everything_else_goes_to_the_wrapped_application(scope: dict[str, Any]) -> None:
    inner = Inner()

    async def unused(*args: Any) -> Any:
        raise AssertionError("the wrapper must not receive or send for it")

    async def call() -> None:
        await with_streams(inner)(scope, unused, unused)

    asyncio.run(call())
    assert inner.scopes == [scope]


def test_a_refused_token_is_answered_on_the_fast_path() -> None:
    inner = Inner()
    url = stream_url("x").replace("/x?", "/y?")
    sent = asyncio.run(serve(with_streams(inner), http_scope(url)))
    assert inner.scopes == []
    assert sent[0]["status"] == 403
    assert sent[1]["body"] == b"The stream token is not valid for this stream.\n"
