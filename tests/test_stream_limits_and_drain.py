"""The stream limit and draining on shutdown, behind a real uvicorn on a real Redis, on both
paths: the fast path (a token) and the Django view (the authorizer)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from localservers import RedisServer

from .stream_fixtures import FastPathServer, RawStream, new_topic, raw_streams, signed_url
from .waiting import WAIT, wait_until

LIMIT = 3
#: Streams open when the server is told to stop, on each path.
DRAINED = 10
#: The issue's bounds: every stream ends within 2 s, the process exits within 5 s.
STREAMS_END_WITHIN = 2.0
EXITS_WITHIN = 5.0


def path_for(topic: str, fast: bool) -> str:
    return signed_url(topic) if fast else f"/broadcast/{topic}"


def opened(stream: RawStream) -> RawStream:
    assert stream.status == 200, stream.head
    stream.read_until(lambda: stream.retries)
    return stream


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
    first = [opened(RawStream(port, path_for(topic, fast))) for fast in (True, True, False)]
    with raw_streams(first), httpx.Client(base_url=limited_server.url, timeout=WAIT) as client:
        for fast in (True, False):
            refused = client.get(path_for(new_topic("public"), fast))
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "3"
            assert "try again later" in refused.text
        first[0].close()  # One leaves: a place is free again.

        def accepted() -> bool:
            with client.stream("GET", path_for(topic, True)) as response:
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
            opened(RawStream(server.port, path_for(topic, fast)))
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
