"""Redis refusing or ending a subscription: one topic's trouble must stay that topic's.

The server may close the engine's connection (``CLIENT KILL``, an output-buffer limit),
refuse a channel (ACL channel permissions) or be asked for a channel name it cannot
carry; every other subscription keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from broadcast_app.exceptions import BroadcastChannelError
from localservers import RedisServer

from .channel_helpers import both_protocols, resp3
from .waiting import WAIT, holds_for, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory


def allow_channels(server: RedisServer, pattern: str) -> None:
    """Restrict the default user's Pub/Sub channels to ``pattern`` (Redis 6.2+ ACL)."""
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "default", "resetchannels", f"&{pattern}")


@both_protocols
def test_recovers_when_redis_closes_the_connection(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
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
def test_a_topic_redis_refuses_does_not_disturb_the_others(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
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
def test_revoking_one_topic_does_not_silence_the_others(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    allowed = channel_factory.topic_name("allowed")
    revoked = channel_factory.topic_name("revoked")
    channel = channel_factory(server=server)
    topic = channel.topic(allowed)
    with topic.subscribe() as sub, channel.topic(revoked).subscribe() as refused:
        # Redis disconnects a client subscribed to a channel it may no longer use.
        allow_channels(server, "allowed:*")

        def delivered() -> bool:
            topic.publish(b"probe")
            message: bytes | None = sub.receive(0.2)
            return message == b"probe"

        assert wait_until(delivered, WAIT), "the allowed topic is silent for good"
        # Re-subscribing after the disconnect, Redis refused the revoked topic: its
        # subscription is closed, and nothing is left to make the reader reconnect.
        assert wait_until(lambda: refused.closed, WAIT)
        gaps = sub.gaps
        assert holds_for(lambda: sub.gaps == gaps, 1.0), f"{sub.gaps - gaps} reconnects in a second"


@resp3
def test_a_topic_name_redis_cannot_carry_is_refused_at_the_boundary(
    channel_factory: ChannelFactory,
) -> None:
    channel = channel_factory()
    # A lone surrogate is a valid str but has no UTF-8 encoding, so no Redis channel name.
    with pytest.raises(ValueError, match="topic name"):
        channel.topic("bad \udcff")


@resp3
def test_a_topic_name_redis_cannot_carry_leaves_the_reader_working(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
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
