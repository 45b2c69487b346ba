"""The stream limit and draining on shutdown, behind a real uvicorn on a real Redis, on both
paths: the fast path (a token) and the Django view (the authorizer)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from localservers import RedisServer

from .django_fixtures import new_topic
from .stream_fixtures import (
    TINY_BUFFER,
    FastPathServer,
    RawStream,
    opened,
    raw_streams,
    stream_path,
)
from .waiting import WAIT, wait_until

LIMIT = 3
#: Streams open when the server is told to stop, on each path.
DRAINED = 10
#: The issue's bounds: every stream ends within 2 s, the process exits within 5 s.
STREAMS_END_WITHIN = 2.0
EXITS_WITHIN = 5.0
#: Clients that stop reading before the signal, and what they are sent meanwhile (90 KB
#: messages at 50/s for 1.5 s: their sends stall, past the kernel's socket buffers).
STALLED = 3
STALLED_MESSAGES, STALLED_SIZE, STALLED_RATE = 75, 90_000, 50


@pytest.fixture(scope="module")
def limited_server(redis_server: RedisServer) -> Iterator[FastPathServer]:
    with FastPathServer(redis_server, BROADCAST_STREAM_MAX_STREAMS=LIMIT) as running:
        yield running


def test_beyond_the_limit_both_paths_answer_503_with_retry_after(
    limited_server: FastPathServer, redis_server: RedisServer
) -> None:
    topic = new_topic("public")
    port = limited_server.port
    # Both paths count together: two fast-path streams and one view stream fill it.
    first = [opened(RawStream(port, stream_path(topic, fast))) for fast in (True, True, False)]
    with raw_streams(first), httpx.Client(base_url=limited_server.url, timeout=WAIT) as client:
        for fast in (True, False):
            refused = client.get(stream_path(new_topic("public"), fast))
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "3"
            assert "try again later" in refused.text
        first[0].close()  # One leaves: a place is free again.

        def accepted() -> bool:
            with client.stream("GET", stream_path(topic, True)) as response:
                return response.status_code == 200

        assert wait_until(accepted, WAIT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_every_stream_with_jittered_retries_and_the_process_exits(
    redis_server: RedisServer, signum: signal.Signals
) -> None:
    # No --timeout-graceful-shutdown: uvicorn would wait for open streams forever.
    server = FastPathServer(redis_server, graceful_timeout=None).start()
    try:
        topic = new_topic("public")
        streams = [
            opened(RawStream(server.port, stream_path(topic, fast)))
            for fast in [True] * DRAINED + [False] * DRAINED
        ]
        with raw_streams(streams):
            assert server.process is not None
            signalled = time.monotonic()
            server.process.send_signal(signum)
            for stream in streams:
                stream.read_to_end(timeout=STREAMS_END_WITHIN + 1)
            ended = time.monotonic() - signalled
            exit_code = server.process.wait(EXITS_WITHIN)
            exited = time.monotonic() - signalled
            log = server.log()
        finals = [stream.retries[-1] for stream in streams]
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {EXITS_WITHIN} s; log:\n{server.log()}")
    finally:
        server.stop()
    assert ended < STREAMS_END_WITHIN, ended
    assert exited < EXITS_WITHIN, exited
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert "Finished server process" in log, log
    assert exit_code in (0, 1, -signum), (exit_code, log)
    assert all(stream.ended for stream in streams)  # Complete responses, not cut off.
    assert all(len(stream.retries) == 2 for stream in streams)  # The opening one, the final.
    # Spread over the window after the usual 3 s: browsers come back over time.
    assert all(3000 <= final <= 13000 for final in finals), finals
    assert len(set(finals)) > len(finals) // 2, finals
    assert wait_until(lambda: redis_server.numsub(topic) == 0, WAIT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "view"])
def test_stalled_clients_do_not_hold_the_process_up_on_a_signal(
    redis_server: RedisServer, redis_publisher: redis.Redis, signum: signal.Signals, fast: bool
) -> None:
    # Without --timeout-graceful-shutdown, uvicorn waits for every connection to close, and a
    # stalled one never flushes: the drain must drop it.
    server = FastPathServer(redis_server, graceful_timeout=None).start()
    try:
        stalled_topic, healthy_topic = new_topic("public"), new_topic("public")
        path = stream_path(stalled_topic, fast)
        stalled = [
            opened(RawStream(server.port, path, receive_buffer=TINY_BUFFER)) for _ in range(STALLED)
        ]
        healthy = opened(RawStream(server.port, stream_path(healthy_topic, fast)))
        with raw_streams([*stalled, healthy]):
            for _ in range(STALLED_MESSAGES):
                redis_publisher.publish(stalled_topic, b"x" * STALLED_SIZE)
                time.sleep(1 / STALLED_RATE)
            assert server.process is not None
            signalled = time.monotonic()
            server.process.send_signal(signum)
            healthy.read_to_end(timeout=STREAMS_END_WITHIN + 1)
            ended = time.monotonic() - signalled
            server.process.wait(EXITS_WITHIN)
            exited = time.monotonic() - signalled
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {EXITS_WITHIN} s; log:\n{server.log()}")
    finally:
        server.stop()
    assert ended < STREAMS_END_WITHIN, ended
    assert exited < EXITS_WITHIN, exited
    assert healthy.ended  # The healthy stream still ends with its final, jittered retry.
    assert len(healthy.retries) == 2, healthy.retries
    assert 3000 <= healthy.retries[-1] <= 13000, healthy.retries
