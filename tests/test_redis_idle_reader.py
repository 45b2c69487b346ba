"""A reader left without topics stops when it loses its connection, instead of
retrying (and logging) until Redis is back; the next topic starts it again."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import pytest

from localservers import RedisServer

from .channel_helpers import engine_threads
from .waiting import WAIT, holds_for, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory

#: How long the reader is watched for attempts to reconnect.
WATCHED = 1.0


@pytest.mark.parametrize("backend", ["redis-resp3", "sharded", "streams"])
def test_a_reader_without_topics_stops_instead_of_reconnecting(
    restartable_redis: RedisServer,
    channel_factory: ChannelFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broadcast_app")
    before = set(threading.enumerate())
    server = restartable_redis
    channel = channel_factory(server=server)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        topic.publish(b"one")
        assert sub.receive(WAIT) == b"one"
    caplog.clear()
    server.kill()
    assert wait_until(lambda: not engine_threads(before), WAIT), engine_threads(before)
    assert holds_for(lambda: not engine_threads(before), WATCHED), "the reader came back"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []

    server.restart()
    with topic.subscribe() as sub:
        topic.publish(b"two")
        assert sub.receive(WAIT) == b"two"
    assert len(engine_threads(before)) == 1
