"""Fork safety: a channel made before ``fork()`` serves the child with its own connection and
reader thread, and the parent's subscriptions never notice the child.

Children report through a pipe as JSON lines and always end with ``os._exit``; an alarm
kills a child that hangs, and the parent kills any child still alive at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest

from .redis_helpers import (
    engine_threads,
)
from .waiting import WAIT, wait_until

#: Seconds after which a child that is still running kills itself.
CHILD_ALARM = 30

pytestmark = pytest.mark.parametrize("backend", ["redis-resp2", "redis-resp3"])

Report = Callable[..., None]


class Child:
    """A forked child running ``body(report)``; the parent reads its reports."""

    def __init__(self, body: Callable[[Report], None]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            self._run_child(body, write_end)
        os.close(write_end)
        self.pid = pid
        self.exit_code: int | None = None
        self._reader = os.fdopen(read_end, "rb")

    @staticmethod
    def _run_child(body: Callable[[Report], None], write_end: int) -> None:
        code = 1
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(CHILD_ALARM)

            def report(**fields: Any) -> None:
                os.write(write_end, json.dumps(fields).encode() + b"\n")

            body(report)
            code = 0
        except BaseException:
            with suppress(BaseException):
                os.write(write_end, json.dumps({"error": traceback.format_exc()}).encode() + b"\n")
        finally:
            os._exit(code)

    def next_report(self, timeout: float = WAIT) -> dict[str, Any]:
        """Return the child's next report; fail if it reports an error or nothing in time."""
        ready, _, _ = select.select([self._reader], [], [], timeout)
        assert ready, f"the child reported nothing within {timeout} s"
        line = self._reader.readline()
        assert line, f"the child ended without reporting (exit code {self.wait()})"
        fields: dict[str, Any] = json.loads(line)
        assert "error" not in fields, f"the child failed:\n{fields['error']}"
        return fields

    def wait(self, timeout: float = WAIT) -> int:
        """Return the child's exit code once it has ended."""
        if self.exit_code is None:
            deadline = time.monotonic() + timeout
            while (reaped := os.waitpid(self.pid, os.WNOHANG))[0] == 0:
                assert time.monotonic() < deadline, f"the child still runs after {timeout} s"
                time.sleep(0.01)
            self.exit_code = os.waitstatus_to_exitcode(reaped[1])
        return self.exit_code

    def kill(self) -> None:
        if self.exit_code is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()
        self._reader.close()


@contextmanager
def forked(body: Callable[[Report], None]) -> Iterator[Child]:
    child = Child(body)
    try:
        yield child
    finally:
        child.kill()


def test_the_child_subscribes_with_its_own_connection_and_thread(
    restartable_redis, channel_factory
):
    server = restartable_redis
    before = set(threading.enumerate())
    channel = channel_factory(server=server)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as parent_sub:
        topic.publish(b"before the fork")
        assert parent_sub.receive(WAIT) == b"before the fork"
        parent_connection = server.subscriber_ids()

        def child_body(report: Report) -> None:
            with topic.subscribe() as sub:
                report(threads=engine_threads())
                report(received=(sub.receive(WAIT) or b"").decode())
            topic.publish(b"from the child")
            report(published=True)

        with forked(child_body) as child:
            assert child.next_report()["threads"] == ["broadcast_app-redis-reader"]
            # The parent's connection plus one of the child's own.
            assert server.numsub(name) == 2
            topic.publish(b"from the parent")
            assert child.next_report()["received"] == "from the parent"
            assert parent_sub.receive(WAIT) == b"from the parent"
            assert child.next_report() == {"published": True}
            assert parent_sub.receive(WAIT) == b"from the child"
            assert child.wait() == 0

        assert wait_until(lambda: server.numsub(name) == 1, WAIT)
        assert server.subscriber_ids() == parent_connection
        topic.publish(b"after the child exited")
        assert parent_sub.receive(WAIT) == b"after the child exited"
        assert parent_sub.gaps == 0
        assert engine_threads(before) == ["broadcast_app-redis-reader"]


def test_a_child_closing_what_it_inherited_leaves_the_parent_alone(
    restartable_redis, channel_factory
):
    server = restartable_redis
    channel = channel_factory(server=server)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as parent_sub:
        topic.publish(b"before the fork")
        assert parent_sub.receive(WAIT) == b"before the fork"

        def child_body(report: Report) -> None:
            # What a framework's shutdown in a worker process may do.
            parent_sub.close()
            channel.close()
            channel.client.close()
            report(closed=True)

        with forked(child_body) as child:
            assert child.next_report() == {"closed": True}
            assert child.wait() == 0
        assert server.numsub(name) == 1
        topic.publish(b"after the child exited")
        assert parent_sub.receive(WAIT) == b"after the child exited"
        assert parent_sub.gaps == 0


def _publish_in_child(channel: Any, name: str) -> None:
    channel.topic(name).publish(b"from a multiprocessing child")


def test_a_multiprocessing_fork_child_publishes(restartable_redis, channel_factory):
    channel = channel_factory(server=restartable_redis)
    name = channel_factory.topic_name()
    with channel.topic(name).subscribe() as parent_sub:
        process = multiprocessing.get_context("fork").Process(
            target=_publish_in_child, args=(channel, name)
        )
        process.start()
        try:
            process.join(WAIT)
            assert process.exitcode == 0
        finally:
            if process.exitcode is None:
                process.kill()
                process.join()
        assert parent_sub.receive(WAIT) == b"from a multiprocessing child"
        channel.topic(name).publish(b"parent still subscribed")
        assert parent_sub.receive(WAIT) == b"parent still subscribed"
        assert parent_sub.gaps == 0
