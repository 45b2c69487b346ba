"""``manage.py tail_topic`` and ``publish_topic``: in-process on the in-memory channel, and
as real processes talking through a private Redis."""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import pytest
from django.core.management import CommandError, call_command

from broadcast_app import get_channel
from localservers import RedisServer

from .django_fixtures import MEMORY, REDIS, ROOT, StartNotice, live_topics
from .waiting import WAIT, wait_until


@pytest.fixture(autouse=True)
def memory_channels(settings: Any) -> Any:
    settings.BROADCAST_CHANNELS = {"default": {"BACKEND": MEMORY}, "other": {"BACKEND": MEMORY}}
    return settings


class Tail:
    """``tail_topic`` run by call_command in a thread."""

    def __init__(self, *args: str) -> None:
        self.stdout = io.StringIO()
        self.stderr = StartNotice()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=args)

    def _run(self, *args: str) -> None:
        try:
            call_command("tail_topic", *args, stdout=self.stdout, stderr=self.stderr)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Tail:
        self.thread.start()
        assert self.stderr.started.wait(WAIT), self.stderr.getvalue()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "tail_topic did not end"

    def lines(self) -> list[str]:
        self.__exit__()
        if self.error is not None:
            raise self.error
        return self.stdout.getvalue().splitlines()


def publish(*args: str, stdin: IO[Any] | None = None) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("publish_topic", *args, stdin=stdin, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


# -- publish_topic --------------------------------------------------------------------------


def test_publish_a_message() -> None:
    with get_channel().topic("news").subscribe() as subscription:
        stdout, stderr = publish("news", "hello é")
        assert subscription.receive(timeout=1) == "hello é".encode()
    assert stdout == "Published 1 message(s) to 'news'.\n"
    assert "in-memory" in stderr  # Another process could not have received it.


@pytest.mark.parametrize("message", [[], ["-"]])
def test_publish_each_line_of_stdin(message: list[str]) -> None:
    stdin = io.BytesIO(b"first\r\nsecond\n\n\xff raw\nlast without newline")
    with get_channel("other").topic("lines").subscribe() as subscription:
        stdout, _ = publish("lines", *message, "--channel", "other", stdin=stdin)
        received = [subscription.receive(timeout=1) for _ in range(5)]
    assert received == [b"first", b"second", b"", b"\xff raw", b"last without newline"]
    assert "Published 5 message(s)" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["news", "x", "--channel", "nope"], "The broadcast channel alias 'nope' doesn't exist."),
        (["bad\nname", "x"], "must not contain control characters"),
    ],
)
def test_publish_errors_are_command_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        publish(*args)


def test_publish_to_an_unreachable_redis_is_a_command_error(
    settings: Any, restartable_redis: RedisServer
) -> None:
    settings.BROADCAST_CHANNELS = {
        "default": {
            "BACKEND": REDIS,
            "LOCATION": restartable_redis.url,
        }
    }
    restartable_redis.kill()
    with pytest.raises(CommandError, match="Publishing to 'news' failed after 0 message"):
        publish("news", "lost")


# -- tail_topic -----------------------------------------------------------------------------


def test_tail_json_lines() -> None:
    with Tail("jobs:1", "--format", "json", "--count", "2") as tail:
        topic = get_channel().topic("jobs:1")
        topic.publish(b'{"percent": 50}')
        topic.publish(b"\xff\xfe")
    first, second = map(json.loads, tail.lines())
    assert first["topic"] == "jobs:1"
    assert (first["payload"], first["encoding"]) == ('{"percent": 50}', "utf-8")
    assert (second["encoding"], base64.b64decode(second["payload"])) == ("base64", b"\xff\xfe")
    assert datetime.fromisoformat(first["received_at"]).tzinfo is not None


def test_tail_text_prefixes_topics_when_several_and_escapes_bad_bytes() -> None:
    with Tail("a", "b", "a", "--count", "3") as tail:
        get_channel().topic("a").publish(b"from a")
        get_channel().topic("b").publish(b"bad \xff byte")
        get_channel().topic("a").publish(b"")
    lines = tail.lines()
    # Each topic keeps its order; the interleaving of topics is not defined.
    assert [line for line in lines if line.startswith("[a]")] == ["[a] from a", "[a] "]
    assert [line for line in lines if line.startswith("[b]")] == ["[b] bad \\xff byte"]


def test_tail_one_topic_prints_bare_payloads() -> None:
    with Tail("solo", "--count", "1", "--channel", "other") as tail:
        get_channel("other").topic("solo").publish(b"just this")
    assert tail.lines() == ["just this"]


def test_tail_stops_after_timeout_and_releases_its_subscriptions() -> None:
    with Tail("quiet", "--timeout", "0.3") as tail:
        assert live_topics() == ["quiet"]
    assert tail.lines() == []
    assert live_topics() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["t", "--channel", "nope"], "The broadcast channel alias 'nope' doesn't exist."),
        (["t", "bad\x00name"], "must not contain control characters"),
        (["t", "--count", "0"], "expected a positive integer"),
        (["t", "--timeout", "-1"], "expected a positive number of seconds"),
        (["t", "--format", "xml"], "invalid choice"),
    ],
)
def test_tail_errors_are_command_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("tail_topic", *args, stdout=io.StringIO(), stderr=io.StringIO())


# -- As real processes, through Redis --------------------------------------------------------


class Lines:
    """Collects the lines a pipe delivers, as they arrive, in a thread."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        for line in pipe:
            self.queue.put(line.decode("utf-8", "replace").rstrip("\n"))

    def next(self) -> str:
        line = self.queue.get(timeout=WAIT)
        self.seen.append(line)
        return line

    def wait_for(self, prefix: str) -> str:
        while True:
            line = self.next()
            if line.startswith(prefix):
                return line

    def rest(self) -> str:
        self.thread.join(WAIT)
        while not self.queue.empty():
            self.seen.append(self.queue.get())
        return "\n".join(self.seen)


def manage(*args: str, redis: RedisServer, **kwargs: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings", "REDIS_URL": redis.url}
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, **kwargs)


@pytest.fixture(params=[signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"])
def tail_process(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> Iterator[subprocess.Popen[bytes]]:
    """tail_topic as a process whose SIGINT disposition is set, whatever the test run's
    own: a background job, nohup and some CI start processes with SIGINT ignored."""
    disposition = request.param
    process = manage(
        "tail_topic", "cli:demo", "--format", "json",
        redis=redis_server, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, disposition),
    )  # fmt: skip
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(WAIT)


def test_tail_and_publish_processes_talk_through_redis_and_ctrl_c_ends_tail_quietly(
    tail_process: subprocess.Popen[bytes], redis_server: RedisServer
) -> None:
    assert tail_process.stdout is not None
    assert tail_process.stderr is not None
    stdout, stderr = Lines(tail_process.stdout), Lines(tail_process.stderr)
    stderr.wait_for("Tailing 'cli:demo'")
    assert redis_server.numsub("cli:demo") == 1

    publisher = manage(
        "publish_topic", "cli:demo", redis=redis_server,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = publisher.communicate(b"step 1\nstep \xff2\n", timeout=WAIT)
    assert publisher.returncode == 0, err
    assert out == b"Published 2 message(s) to 'cli:demo'.\n"

    # Each line is flushed as it arrives, while tail_topic keeps running.
    first, second = json.loads(stdout.next()), json.loads(stdout.next())
    assert (first["topic"], first["payload"]) == ("cli:demo", "step 1")
    assert base64.b64decode(second["payload"]) == b"step \xff2"
    assert tail_process.poll() is None

    tail_process.send_signal(signal.SIGINT)
    assert tail_process.wait(WAIT) == 0
    errors = stderr.rest()
    assert "Traceback" not in errors
    assert "KeyboardInterrupt" not in errors
    assert wait_until(lambda: redis_server.numsub("cli:demo") == 0, WAIT)
