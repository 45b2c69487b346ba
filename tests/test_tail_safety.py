"""``manage.py tail_topic`` faces hostile payloads and unreachable servers: what anyone who
may publish sends never acts on the operator's terminal, and a Redis that cannot be reached
ends the command in time with a reason that keeps the password secret."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from broadcast_app import get_channel
from localservers import free_port

from .django_fixtures import MEMORY, REDIS, SHARDED, STREAMS, live_topics
from .waiting import WAIT, wait_until

REDIS_BACKENDS = {"pubsub": REDIS, "sharded": SHARDED, "streams": STREAMS}
PASSWORD = "s3cret-pa55"
#: Leeway past --timeout for starting and stopping on a loaded machine.
SLACK = 2.0

#: Payload -> how text output shows it: C0, DEL and C1 controls, line breaks and
#: backslashes are escaped; bytes that are not UTF-8 read as \xNN; code points above
#: U+007F as \uNNNN, so that a C1 control and an undecodable byte never look alike.
HOSTILE = {
    b"\x1b]0;owned\x07title": r"\x1b]0;owned\x07title",
    b"\x1b[2J\x1b[31mred": r"\x1b[2J\x1b[31mred",
    "c1 \u009b31m \u009d0;t\u009c \u0085next".encode(): r"c1 \u009b31m \u009d0;t\u009c \u0085next",
    b"two\nlines\r\ttab\x00nul\x7fdel": r"two\nlines\r\ttab\x00nul\x7fdel",
    b"back\\slash \\x1b": r"back\\slash \\x1b",
    b"bad \xc2\x9b byte \xff": r"bad \u009b byte \xff",
    "bidi \u202eevil\u2066 \u2028sep".encode(): r"bidi \u202eevil\u2066 \u2028sep",
    "ünïcödé 主题 🎉".encode(): "ünïcödé 主题 🎉",
}


def tail_in_thread(*args: str) -> tuple[threading.Thread, io.StringIO, io.StringIO]:
    stdout, stderr = io.StringIO(), io.StringIO()
    thread = threading.Thread(
        target=call_command, args=("tail_topic", *args), kwargs={"stdout": stdout, "stderr": stderr}
    )
    thread.start()
    return thread, stdout, stderr


@pytest.mark.parametrize("several", [False, True], ids=["one-topic", "prefixed"])
def test_text_output_escapes_what_would_act_on_a_terminal(settings: Any, several: bool) -> None:
    settings.BROADCAST_CHANNELS = {"default": {"BACKEND": MEMORY}}
    # Topic names may hold bidi controls: the prefix escapes them too.
    topic = "chat:\u202eroom"
    topics = [topic, "other"] if several else [topic]
    thread, stdout, _ = tail_in_thread(*topics, "--count", str(len(HOSTILE)))
    assert wait_until(lambda: sorted(live_topics()) == sorted(topics), WAIT), (
        "tail_topic did not subscribe"
    )
    for payload in HOSTILE:
        get_channel().topic(topic).publish(payload)
    thread.join(WAIT)
    assert not thread.is_alive()
    prefix = "[chat:\\u202eroom] " if several else ""
    assert stdout.getvalue().splitlines() == [prefix + shown for shown in HOSTILE.values()]
    printed = stdout.getvalue().replace("\n", "")
    assert all(character.isprintable() for character in printed), ascii(printed)


def redis_settings(settings: Any, backend: str, **options: Any) -> str:
    """Point the default channel at a port where nothing listens, with a password in the
    URL; return that port's host:port."""
    where = f"127.0.0.1:{free_port()}"
    settings.BROADCAST_CHANNELS = {
        "default": {
            "BACKEND": REDIS_BACKENDS[backend],
            "LOCATION": f"redis://:{PASSWORD}@{where}/0",
            "OPTIONS": options,
        }
    }
    return where


def assert_refused(raised: pytest.ExceptionInfo[CommandError], stderr: str, where: str) -> None:
    message = str(raised.value)
    assert "Could not subscribe to 'news'" in message
    assert where in message
    assert "refused" in message.lower()
    assert PASSWORD not in message + stderr


@pytest.mark.parametrize("backend", list(REDIS_BACKENDS))
def test_timeout_holds_when_redis_is_unreachable(settings: Any, backend: str) -> None:
    where = redis_settings(settings, backend)  # The default subscribe_timeout is 10 s.
    stderr = io.StringIO()
    started = time.monotonic()
    with pytest.raises(CommandError) as raised:
        call_command("tail_topic", "news", "--timeout", "1.5", stdout=io.StringIO(), stderr=stderr)
    assert time.monotonic() - started < 1.5 + SLACK
    assert_refused(raised, stderr.getvalue(), where)
    assert "within 1.5 s" in str(raised.value)


@pytest.mark.parametrize("backend", list(REDIS_BACKENDS))
def test_unreachable_redis_is_named_without_its_password(settings: Any, backend: str) -> None:
    where = redis_settings(settings, backend, subscribe_timeout=1.0)
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("tail_topic", "news", stdout=io.StringIO(), stderr=stderr)
    assert_refused(raised, stderr.getvalue(), where)


@pytest.mark.parametrize("output", ["text", "json"])
def test_named_events_show_their_name_escaped(settings: Any, output: str) -> None:
    settings.BROADCAST_CHANNELS = {"default": {"BACKEND": MEMORY}}
    thread, stdout, _ = tail_in_thread("news", "--count", "2", "--format", output)
    assert wait_until(lambda: get_channel().stats()["subscriptions"] == 1, WAIT), (
        "tail_topic did not subscribe"
    )
    topic = get_channel().topic("news")
    topic.publish(b"\x1b[2J", event="alert\u202e")
    topic.publish(b"plain")
    thread.join(WAIT)
    assert not thread.is_alive()
    if output == "text":
        assert stdout.getvalue().splitlines() == ["<alert\\u202e> \\x1b[2J", "plain"]
    else:
        first, second = (json.loads(line) for line in stdout.getvalue().splitlines())
        assert (first["event"], first["payload"]) == ("alert\u202e", "\x1b[2J")
        assert "event" not in second
        assert stdout.getvalue().isascii()
