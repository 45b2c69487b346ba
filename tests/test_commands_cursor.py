"""``manage.py tail_topic --since``: replaying a topic's history on the Redis Streams backend,
in-process and as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from broadcast_app import get_channel
from localservers import RedisServer

from .django_fixtures import ROOT, StartNotice, live_topics, new_topic, streams_channels
from .waiting import WAIT


@pytest.fixture(autouse=True)
def channels(settings: Any, redis_server: RedisServer) -> Any:
    settings.BROADCAST_CHANNELS = streams_channels(redis_server)
    return settings


def publish(topic: str, *payloads: bytes) -> list[str]:
    """Publish on the default channel; return the cursors of every message of the topic."""
    channel_topic = get_channel().topic(topic)
    for payload in payloads:
        channel_topic.publish(payload)
    client = get_channel().client  # type: ignore[attr-defined]
    return [entry_id.decode() for entry_id, _ in client.xrange(topic)]


def tail(*args: str, stderr: io.StringIO | None = None) -> tuple[list[str], str]:
    """Run tail_topic to its end; return its stdout lines and its stderr."""
    stdout, stderr = io.StringIO(), stderr or io.StringIO()
    call_command("tail_topic", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue().splitlines(), stderr.getvalue()


def test_since_replays_what_followed_the_cursor_with_the_cursors_in_json() -> None:
    topic = new_topic("cli")
    cursors = publish(topic, b"0", b"1", b"\xff 2", b"3")
    lines, stderr = tail(topic, "--since", cursors[0], "--format", "json", "--count", "3")
    records = [json.loads(line) for line in lines]
    assert [record["cursor"] for record in records] == cursors[1:]
    assert [(r["payload"], r["encoding"]) for r in records] == [
        ("1", "utf-8"),
        ("/yAy", "base64"),  # b"\xff 2"
        ("3", "utf-8"),
    ]
    assert "missed" not in stderr


def test_since_the_origin_replays_everything_then_continues_live() -> None:
    topic = new_topic("cli")
    publish(topic, b"old 1", b"old 2")
    stderr = StartNotice()
    result: list[list[str]] = []
    thread = threading.Thread(
        target=lambda: result.append(
            tail(topic, "--since", "0-0", "--count", "3", stderr=stderr)[0]
        )
    )
    thread.start()
    try:
        assert stderr.started.wait(WAIT)
        publish(topic, b"new")
    finally:
        thread.join(WAIT)
    assert not thread.is_alive()
    assert result == [["old 1", "old 2", "new"]]
    assert live_topics() == []


def test_json_has_cursors_on_a_streams_channel_even_without_since() -> None:
    topic = new_topic("cli")
    stderr = StartNotice(on_start=lambda: publish(topic, b"live"))
    lines, _ = tail(topic, "--format", "json", "--count", "1", stderr=stderr)
    (record,) = map(json.loads, lines)
    assert record["cursor"] == publish(topic)[0]


def test_json_has_no_cursor_on_a_channel_without_history() -> None:
    stderr = StartNotice(on_start=lambda: get_channel("memory").topic("m").publish(b"x"))
    lines, _ = tail("m", "--channel", "memory", "--format", "json", "--count", "1", stderr=stderr)
    assert "cursor" not in json.loads(lines[0])


def test_a_cursor_older_than_the_history_is_reported_as_missed_messages(
    redis_server: RedisServer,
) -> None:
    topic = new_topic("cli")
    cursors = publish(topic, b"0", b"1", b"2", b"3")
    redis_server._admin_client().xtrim(topic, maxlen=1, approximate=False)
    lines, stderr = tail(topic, "--since", cursors[0], "--count", "1")
    assert lines == ["3"]
    assert f"Messages of {topic!r} may have been missed here." in stderr


@pytest.mark.parametrize(
    "cursor", ["garbage", "1-", "-1-0", "1-0-0", "18446744073709551616-0", "9" * 100]
)
def test_a_malformed_cursor_is_a_command_error(cursor: str) -> None:
    with pytest.raises(CommandError, match="cursor"):
        tail("t", f"--since={cursor}")
    assert live_topics() == []


@pytest.mark.parametrize("alias", ["memory", "pubsub"])
def test_since_on_a_channel_without_history_is_a_command_error(alias: str) -> None:
    with pytest.raises(CommandError, match=f"channel {alias!r} keeps no history"):
        tail("t", "--channel", alias, "--since", "0-0")
    assert live_topics(alias) == []


def test_a_replay_that_cannot_read_redis_is_a_command_error(redis_server: RedisServer) -> None:
    topic = new_topic("cli")
    (cursor,) = publish(topic, b"first")
    admin = redis_server._admin_client()

    def break_the_stream() -> None:  # Subscribed; the replay has not read yet.
        admin.delete(topic)
        admin.set(topic, "not a stream")

    try:
        with pytest.raises(CommandError, match=f"Could not replay the history of {topic!r}"):
            tail(topic, "--since", cursor, stderr=StartNotice(on_start=break_the_stream))
    finally:
        admin.delete(topic)
    assert live_topics() == []


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command, check=False, cwd=ROOT, env=env, capture_output=True, timeout=WAIT * 3
    )


def test_as_a_process_since_replays_through_redis(redis_server: RedisServer) -> None:
    topic = new_topic("cli")
    cursors = publish(topic, b"a", b"b", b"c")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "REDIS_URL": redis_server.url,
        "BROADCAST_BACKEND": "streams",
    }
    command = [sys.executable, "manage.py", "tail_topic", topic, "--since", cursors[0],
               "--format", "json", "--count", "2"]  # fmt: skip
    done = run(command, env)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["payload"], r["cursor"]) for r in records] == [("b", cursors[1]), ("c", cursors[2])]
    assert b"Traceback" not in done.stderr

    done = run([*command[:5], "not-a-cursor"], env)
    assert done.returncode == 1
    assert b"CommandError: A cursor must look like" in done.stderr
