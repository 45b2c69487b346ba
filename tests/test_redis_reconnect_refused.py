"""A server that answers but refuses the reader's connections (a password it does not
have, say) is retried with a growing backoff, not at the probing pace used for a server
that cannot be reached at all."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from localservers import RedisServer

from .channel_helpers import resp3
from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory

#: How long the refused reconnects are counted.
REFUSED_FOR = 3.0
#: Probing every 0.1-0.2 s would make 15 to 30 attempts in REFUSED_FOR; backing off from
#: 50 ms doubling makes about 6.
MOST_ATTEMPTS = 10


def connections_received(server: RedisServer) -> int:
    stats = server._admin_client().info("stats")
    return int(stats["total_connections_received"])


@resp3
def test_a_server_refusing_the_reader_is_retried_with_backoff(
    restartable_redis: RedisServer, channel_factory: ChannelFactory
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server)
    topic = channel.topic(channel_factory.topic_name())
    admin = server._admin_client()
    with topic.subscribe() as sub:
        # The admin connection stays authenticated; new connections need the password.
        admin.config_set("requirepass", "not-the-channels")
        try:
            before = connections_received(server)
            admin.client_kill_filter(_type="pubsub")
            time.sleep(REFUSED_FOR)  # The behaviour under test: how often it retries.
            attempts = connections_received(server) - before
        finally:
            admin.config_set("requirepass", "")
        assert 1 <= attempts <= MOST_ATTEMPTS, attempts
        assert wait_until(lambda: server.numsub(sub.topic) == 1, WAIT)
        topic.publish(b"back")
        assert sub.receive(WAIT) == b"back"
    print(f"{attempts} refused reconnects in {REFUSED_FOR} s")
