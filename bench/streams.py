"""The Redis Streams backend: publish throughput, and replay speed from a cursor.

Publish: ``topic.publish()`` (one script: XADD, then PEXPIRE) against a raw
``redis.Redis.xadd()`` (no expiry) on the same client, one thread, in ABBA rounds
(``publish.compare``). Replay: a stream is filled, then a subscription from the origin
cursor receives every entry with ``receive_with_cursor()`` (sync) or
``await areceive_with_cursor()`` (asyncio), against a raw ``XRANGE`` loop with the same
page size that builds no messages. The sides take turns round by round.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from broadcast_app import ORIGIN
from broadcast_app.backends.streams import REPLAY_PAGE, StreamsBroadcastChannel

from . import publish
from .stats import median, spread
from .workload import PAYLOAD, rotated

#: Seconds a replay may wait for its next message before it counts as stalled.
STALL_TIMEOUT = 5.0
FILL_BATCH = 10_000


def _key(label: str) -> str:
    return f"bench-streams-{label}-{uuid.uuid4().hex[:8]}"


def measure_publish(client: redis.Redis, *, messages: int, rounds: int) -> dict[str, Any]:
    """Publish rates (msg/s, one thread) of the channel and of a raw XADD, and their ratio."""
    channel = StreamsBroadcastChannel(client)
    topic = channel.topic(_key("publish"))
    raw_key = _key("publish-raw")

    def raw(payload: bytes) -> object:
        return client.xadd(raw_key, {"data": payload})

    try:
        return publish.compare(topic.publish, raw, threads=1, messages=messages, rounds=rounds)
    finally:
        channel.close()
        client.delete(topic.name, raw_key)


def _fill(client: redis.Redis, key: str, messages: int) -> None:
    pipe = client.pipeline(transaction=False)
    for number in range(messages):
        pipe.xadd(key, {"data": PAYLOAD})
        if number % FILL_BATCH == FILL_BATCH - 1:
            pipe.execute()
    pipe.execute()


def _replay_sync(channel: StreamsBroadcastChannel, key: str, messages: int) -> float:
    began = time.perf_counter()
    with channel.topic(key).subscribe(cursor=ORIGIN) as sub:
        for _ in range(messages):
            if sub.receive_with_cursor(STALL_TIMEOUT) is None:
                raise RuntimeError("The replay stalled.")
    return messages / (time.perf_counter() - began)


def _replay_async(channel: StreamsBroadcastChannel, key: str, messages: int) -> float:
    async def main() -> float:
        began = time.perf_counter()
        async with channel.topic(key).subscribe(cursor=ORIGIN) as sub:
            for _ in range(messages):
                if await sub.areceive_with_cursor(STALL_TIMEOUT) is None:
                    raise RuntimeError("The replay stalled.")
        return messages / (time.perf_counter() - began)

    return asyncio.run(main())


def _xrange_loop(client: redis.Redis, key: str, messages: int) -> float:
    began = time.perf_counter()
    received, start = 0, "-"
    while page := client.xrange(key, start, "+", count=REPLAY_PAGE):
        received += len(page)
        last_id = page[-1][0]
        assert isinstance(last_id, bytes)
        start = "(" + last_id.decode()
    if received != messages:
        raise RuntimeError(f"XRANGE returned {received} entries, not {messages}.")
    return messages / (time.perf_counter() - began)


def measure_replay(client: redis.Redis, *, messages: int, rounds: int) -> dict[str, Any]:
    """Median rates (msg/s) of replaying ``messages`` entries from the origin cursor,
    through a subscription (sync and asyncio) and through a raw XRANGE loop."""
    channel = StreamsBroadcastChannel(client)
    key = _key("replay")
    sides: dict[str, Callable[[], float]] = {
        "raw_xrange": lambda: _xrange_loop(client, key, messages),
        "ours_sync": lambda: _replay_sync(channel, key, messages),
        "ours_async": lambda: _replay_async(channel, key, messages),
    }
    rates: dict[str, list[float]] = {side: [] for side in sides}
    try:
        _fill(client, key, messages)
        for number in range(rounds):
            for side in rotated(list(sides), number):
                rates[side].append(sides[side]())
    finally:
        channel.close()
        client.delete(key)
    return {
        "messages": messages,
        "rounds": rounds,
        "payload_bytes": len(PAYLOAD),
        "page_size": REPLAY_PAGE,
        **{side: {"msg_per_s": median(values), "rates": values} for side, values in rates.items()},
        "noise": {side: spread(values) for side, values in rates.items()},
    }


def measure(
    client: redis.Redis,
    *,
    publish_messages: int,
    publish_rounds: int,
    replay_messages: int,
    replay_rounds: int,
) -> dict[str, Any]:
    """Both measurements, on the run's private server."""
    return {
        "publish": measure_publish(client, messages=publish_messages, rounds=publish_rounds),
        "replay": measure_replay(client, messages=replay_messages, rounds=replay_rounds),
    }
