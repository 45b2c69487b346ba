"""Helpers shared by the channel tests: parametrizations by backend, thread accounting,
traffic to and from subscriptions, garbage collection, and the Redis Streams reader as its
server sees it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from localservers import RedisServer

from .waiting import WAIT, wait_until

both_protocols = pytest.mark.parametrize("backend", ["redis-resp2", "redis-resp3"])
resp3 = pytest.mark.parametrize("backend", ["redis-resp3"])


def engine_threads(before: Iterable[threading.Thread] = ()) -> list[str]:
    """Names of the engine threads running now that were not running ``before``.

    Other tests' long-lived channels may have readers of their own; they do not count.
    """
    return [
        thread.name
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith("broadcast_app-")
    ]


def subscribe_and_deliver(stack: ExitStack, channel: Any, names: list[str], count: int) -> None:
    """Enter ``count`` subscriptions on ``stack``, spread round-robin over the topics
    ``names``; publish each topic's name to it once and assert every subscription gets it."""
    subs = [
        stack.enter_context(channel.topic(names[number % len(names)]).subscribe())
        for number in range(count)
    ]
    for name in names:
        channel.topic(name).publish(name.encode())
    for sub in subs:
        assert sub.receive(WAIT) == sub.topic.encode()


def numbered(count: int, start: int = 0) -> list[bytes]:
    """The payloads ``b"<start>"``, ``b"<start + 1>"``... ``count`` of them."""
    return [b"%d" % number for number in range(start, start + count)]


@contextmanager
def publishing(
    background: Callable[..., Any], topic: Any, payload: bytes, interval: float
) -> Iterator[None]:
    """Publish ``payload`` to ``topic`` every ``interval`` seconds, in a ``background`` task,
    until the block ends."""
    stop = threading.Event()

    def publish_until_stopped() -> None:
        while not stop.is_set():
            topic.publish(payload)
            stop.wait(interval)

    publisher = background(publish_until_stopped)
    try:
        yield
    finally:
        stop.set()
        publisher.result()


def drop_and_collect(objects: list[Any]) -> None:
    """Drop what should be the last references to ``objects`` and run the collector."""
    objects.clear()
    gc.collect()


# -- the Redis Streams reader ------------------------------------------------------------------


def reader_connections(server: RedisServer) -> list[dict[str, str]]:
    """``CLIENT LIST`` entries of the connections reading streams (XREAD)."""
    return [entry for entry in server.clients() if entry["cmd"] == "xread"]


@contextmanager
def refusing_new_connections(server: RedisServer) -> Iterator[None]:
    """New connections cannot authenticate inside the block; open ones keep working."""
    server._admin_client().config_set("requirepass", "not-the-channel's")
    try:
        yield
    finally:
        server._admin_client().config_set("requirepass", "")


def reader_blocked(server: RedisServer) -> bool:
    """Whether the reader waits in a blocked XREAD (``CLIENT LIST`` flag ``b``)."""
    return any("b" in entry["flags"] for entry in reader_connections(server))


def kill_reader(server: RedisServer) -> None:
    (reader,) = reader_connections(server)
    server._admin_client().client_kill_filter(_id=reader["id"])


@contextmanager
def reader_away(server: RedisServer) -> Iterator[None]:
    """Kill the reader's connection and refuse its reconnects inside the block: what is
    published there is published in its absence. The block ends once a reconnect was
    refused."""
    with refusing_new_connections(server):
        refusals = server.error_replies("NOAUTH")
        kill_reader(server)
        yield
        assert wait_until(lambda: server.error_replies("NOAUTH") > refusals, WAIT)
