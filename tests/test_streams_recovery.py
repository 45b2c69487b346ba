"""The Redis Streams backend recovering: a killed reader connection, a frozen or restarted
server, trimmed entries, a forked child. Streams resume after the last entry delivered."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from localservers import RedisServer

from .channel_helpers import numbered, reader_away, reader_connections, refusing_new_connections
from .forking import forked
from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory


@pytest.fixture(params=["streams", "streams-resp2"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the Streams backend, over RESP3 and RESP2."""
    name: str = request.param
    return name


# -- recovery ---------------------------------------------------------------------------------


def receive_all(sub: Any, count: int) -> list[bytes | None]:
    return [sub.receive(WAIT) for _ in range(count)]


def test_a_killed_reader_connection_resumes_without_loss(
    channel_factory: ChannelFactory,
    restartable_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broadcast_app")
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        topic.publish(b"before")
        assert sub.receive(WAIT) == b"before"
        with reader_away(restartable_redis):
            for payload in numbered(300):
                topic.publish(payload)
        assert receive_all(sub, 300) == numbered(300)
        topic.publish(b"after")
        assert sub.receive(WAIT) == b"after"
        assert (sub.gaps, sub.dropped) == (0, 0)
    messages = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert any(level == logging.WARNING and "reconnecting" in m for level, m in messages)
    assert any(level == logging.INFO and "Reconnected" in m for level, m in messages)


def test_a_frozen_server_is_detected_and_the_reader_resumes(
    channel_factory: ChannelFactory,
    restartable_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = channel_factory(server=restartable_redis, health_check_interval=0.2)
    topic = channel.topic(channel_factory.topic_name())
    publisher = restartable_redis.client()
    channel_factory.add_closer(publisher.close)
    with topic.subscribe() as sub:
        publisher.xadd(topic.name, {"data": "before"})
        assert sub.receive(WAIT) == b"before"
        restartable_redis.pause()
        try:
            # Twice the interval without a reply: the reader drops the connection.
            assert wait_until(lambda: "no reply" in caplog.text, WAIT)
        finally:
            restartable_redis.resume()
        with refusing_new_connections(restartable_redis):
            for payload in numbered(50):
                publisher.xadd(topic.name, {"data": payload})
        assert receive_all(sub, 50) == numbered(50)
        assert sub.gaps == 0


def test_entries_trimmed_while_the_reader_was_away_count_as_a_gap(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    channel = channel_factory(server=restartable_redis, maxlen=10)
    topic, other = (channel.topic(channel_factory.topic_name()) for _ in range(2))
    with topic.subscribe() as trimmed, other.subscribe() as untouched:
        topic.publish(b"seen")
        assert trimmed.receive(WAIT) == b"seen"
        with reader_away(restartable_redis):
            for payload in numbered(500):
                topic.publish(payload)
            other.publish(b"kept")
        assert wait_until(lambda: trimmed.gaps == 1, WAIT)
        assert untouched.receive(WAIT) == b"kept"
        assert untouched.gaps == 0
        # What is still retained arrives, in order, ending with the newest.
        got = []
        while (message := trimmed.receive(0.5)) is not None:
            got.append(message)
        assert 10 <= len(got) < 500
        assert got == numbered(len(got), 500 - len(got))


def test_a_restarted_server_counts_as_a_gap_and_the_subscription_goes_on(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        topic.publish(b"before")
        assert sub.receive(WAIT) == b"before"
        restartable_redis.kill()
        restartable_redis.restart()
        assert wait_until(lambda: sub.gaps == 1, WAIT)
        topic.publish(b"after")
        assert sub.receive(WAIT) == b"after"


def test_a_forked_child_reads_with_its_own_reader(
    channel_factory: ChannelFactory, restartable_redis: RedisServer
) -> None:
    channel = channel_factory(server=restartable_redis)
    topic = channel.topic(channel_factory.topic_name())

    def child_body(report: Any) -> None:
        with topic.subscribe() as sub:
            report(ready=True)
            message = sub.receive(WAIT)
            report(got=message.decode() if message else None)
        channel.close()
        report(closed=True)

    with topic.subscribe() as parent:
        topic.publish(b"before the fork")
        assert parent.receive(WAIT) == b"before the fork"
        with forked(child_body) as child:
            assert child.next_report() == {"ready": True}
            topic.publish(b"to both")
            assert child.next_report() == {"got": "to both"}
            assert child.next_report() == {"closed": True}
            assert child.wait() == 0
        assert parent.receive(WAIT) == b"to both"
        topic.publish(b"the parent reads on")
        assert parent.receive(WAIT) == b"the parent reads on"
        assert len(reader_connections(restartable_redis)) == 1
