"""Redis refusing or ending a subscription: one topic's trouble must stay that topic's.

The server may close the engine's connection (``CLIENT KILL``, an output-buffer limit),
refuse a channel (ACL channel permissions) or be asked for a channel name it cannot
carry; every other subscription keeps working.
"""

from __future__ import annotations

import time

import pytest

from broadcast_app.exceptions import BroadcastChannelError
from localservers import RedisServer

from .redis_helpers import (
    both_protocols,
    resp3,
)
from .waiting import WAIT, wait_until


def allow_channels(server: RedisServer, pattern: str) -> None:
    """Restrict the default user's Pub/Sub channels to ``pattern`` (Redis 6.2+ ACL)."""
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "default", "resetchannels", f"&{pattern}")


@both_protocols
def test_recovers_when_redis_closes_the_connection(restartable_redis, channel_factory):
    server = restartable_redis
    channel = channel_factory(server=server)
    topic = channel.topic(channel_factory.topic_name())
    with topic.subscribe() as sub:
        (old,) = server.subscriber_ids()
        with server.client() as admin:
            admin.client_kill_filter(_id=old)
        assert wait_until(lambda: sub.gaps == 1, WAIT)
        assert wait_until(lambda: server.subscriber_ids() not in ([], [old]), WAIT)
        topic.publish(b"after the kill")
        assert sub.receive(WAIT) == b"after the kill"


@both_protocols
def test_a_topic_redis_refuses_does_not_disturb_the_others(restartable_redis, channel_factory):
    server = restartable_redis
    allowed = channel_factory.topic_name("allowed")
    refused = channel_factory.topic_name("refused")
    allow_channels(server, "allowed:*")
    channel = channel_factory(server=server, subscribe_timeout=2.0)
    with channel.topic(allowed).subscribe() as sub:
        connections = server.subscriber_ids()
        with pytest.raises(BroadcastChannelError):
            channel.topic(refused).subscribe().__enter__()
        # The refusal concerns one topic: no reconnect, no gap for the others.
        assert sub.gaps == 0
        assert server.subscriber_ids() == connections
        channel.topic(allowed).publish(b"undisturbed")
        assert sub.receive(WAIT) == b"undisturbed"


@both_protocols
def test_revoking_one_topic_does_not_silence_the_others(restartable_redis, channel_factory):
    server = restartable_redis
    allowed = channel_factory.topic_name("allowed")
    revoked = channel_factory.topic_name("revoked")
    channel = channel_factory(server=server)
    topic = channel.topic(allowed)
    with topic.subscribe() as sub, channel.topic(revoked).subscribe():
        # Redis disconnects a client subscribed to a channel it may no longer use.
        allow_channels(server, "allowed:*")

        def delivered() -> bool:
            topic.publish(b"probe")
            return sub.receive(0.2) == b"probe"

        assert wait_until(delivered, WAIT), "the allowed topic is silent for good"
        # Settled: no more reconnects, so no more gaps.
        time.sleep(0.5)
        gaps = sub.gaps
        time.sleep(1.0)
        assert sub.gaps == gaps, f"{sub.gaps - gaps} reconnects within a second"


@resp3
def test_a_topic_name_redis_cannot_carry_is_refused_at_the_boundary(channel_factory):
    channel = channel_factory()
    # A lone surrogate is a valid str but has no UTF-8 encoding, so no Redis channel name.
    with pytest.raises(ValueError, match="topic name"):
        channel.topic("bad \udcff")


@resp3
def test_a_topic_name_redis_cannot_carry_leaves_the_reader_working(
    restartable_redis, channel_factory
):
    server = restartable_redis
    channel = channel_factory(server=server)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    with topic.subscribe() as sub:
        with pytest.raises(ValueError):
            channel.topic("bad \udcff").subscribe().__enter__()
        # The reader re-subscribes every topic after a reconnect; the bad one must not be
        # among them.
        server.kill()
        assert wait_until(lambda: sub.gaps == 1, WAIT)
        server.restart()
        assert wait_until(lambda: server.numsub(name) == 1, WAIT), "the reader did not recover"
        topic.publish(b"recovered")
        assert sub.receive(WAIT) == b"recovered"
