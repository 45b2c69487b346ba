"""``broadcast_app.testing``: ``capture_messages`` on real channels, and the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from broadcast_app import PublishError, get_channel, send_event
from broadcast_app.testing import capture_messages
from localservers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
MEMORY = {"BACKEND": "broadcast_app.backends.memory.InMemoryBroadcastChannel"}
BACKENDS = {
    "memory": "broadcast_app.backends.memory.InMemoryBroadcastChannel",
    "redis": "broadcast_app.backends.redis.RedisBroadcastChannel",
    "streams": "broadcast_app.backends.streams.StreamsBroadcastChannel",
}


@pytest.fixture(params=list(BACKENDS))
def configured(request: pytest.FixtureRequest, settings: Any, redis_server: Any) -> str:
    backend: str = request.param
    entry: dict[str, Any] = {"BACKEND": BACKENDS[backend]}
    if backend != "memory":
        entry["LOCATION"] = redis_server.url
    settings.BROADCAST_CHANNELS = {"default": entry, "other": MEMORY}
    return backend


def test_capture_holds_what_the_block_published_in_order(configured: str) -> None:
    topic = get_channel().topic("capture:order")
    topic.publish(b"before")
    with capture_messages("capture:order") as messages:
        topic.publish(b"one")
        send_event("capture:order", {"percent": 50}, event="progress")
        get_channel().topic("capture:elsewhere").publish(b"other topic")
        get_channel("other").topic("capture:order").publish(b"other channel")
        topic.publish(b"two")
        assert messages == [b"one", b'{"percent":50}', b"two"]  # Complete at once.
    topic.publish(b"after")
    assert messages == [b"one", b'{"percent":50}', b"two"]
    assert messages.events == [None, "progress", None]


def test_capture_records_publishes_of_every_thread(configured: str) -> None:
    topic = get_channel().topic("capture:threads")
    with capture_messages("capture:threads") as messages:
        threads = [
            threading.Thread(target=topic.publish, args=(b"%d" % index,)) for index in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(messages) == [b"%d" % index for index in range(8)]


def test_capture_leaves_out_a_publish_that_failed(settings: Any, restartable_redis: Any) -> None:
    settings.BROADCAST_CHANNELS = {
        "default": {
            "BACKEND": BACKENDS["redis"],
            "LOCATION": restartable_redis.url,
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }
    topic = get_channel().topic("capture:failed")
    with capture_messages("capture:failed") as messages:
        topic.publish(b"delivered")
        restartable_redis.stop()
        with pytest.raises(PublishError):
            topic.publish(b"lost")
    assert messages == [b"delivered"]


def test_capture_refuses_a_bad_topic_name(settings: Any) -> None:
    settings.BROADCAST_CHANNELS = {"default": MEMORY}
    with pytest.raises(ValueError, match="topic name"), capture_messages("bad\nname"):
        pass


def test_the_plugin_gives_each_test_a_private_in_memory_channel(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Run through pytest's entry point in a new process, as a user's project would."""
    (tmp_path / "test_user_project.py").write_text(
        textwrap.dedent(
            """
            from broadcast_app import get_channel
            from broadcast_app.testing import capture_messages

            def test_first(broadcast_channel):
                assert broadcast_channel is get_channel()
                assert not broadcast_channel.features.crosses_processes
                with capture_messages("jobs") as messages:
                    broadcast_channel.topic("jobs").publish(b"hello")
                assert messages == [b"hello"]
                global FIRST, LEFT_OPEN
                FIRST = broadcast_channel
                LEFT_OPEN = broadcast_channel.topic("jobs").subscribe().__enter__()

            def test_second(broadcast_channel):
                assert broadcast_channel is not FIRST
                assert LEFT_OPEN.closed  # The first test's channel was closed after it.
            """
        )
    )
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "REDIS_URL": redis_server.url,  # The project's own channel is Redis...
        "PYTHONPATH": str(ROOT),
    }
    # In the order written, whatever plugins the outer run has: the second test checks
    # what the first left.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
