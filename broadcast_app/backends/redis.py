"""Redis Pub/Sub backend: at-most-once broadcast across processes and machines.

Per process and channel: one Pub/Sub connection and one reader thread, whatever the
number of subscriptions; publishing uses the client's own connection pool. The Redis
channel of a topic is the topic name itself, so ``redis-cli PUBLISH`` and other
clients interoperate; ``prefix`` opts in to a namespace.
"""

from __future__ import annotations

import redis
from redis.exceptions import RedisError

from ..exceptions import PublishError
from ._client import (
    CLIENT_DEFAULTS,
    DEFAULT_HEALTH_CHECK_INTERVAL,
    RedisClientChannel,
    default_retry,
)
from ._feed_pubsub import PUBSUB_COMMANDS, PubSubCommands, PubSubFeed
from ._hub import Hub, Upstream

__all__ = [
    "CLIENT_DEFAULTS",
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "RedisBroadcastChannel",
    "default_retry",
]


class RedisBroadcastChannel(RedisClientChannel[redis.Redis]):
    """Broadcast over Redis Pub/Sub (``PUBLISH`` / ``SUBSCRIBE``), RESP2 or RESP3.

    ``client`` is a ``redis.Redis``; the channel never closes a client it was given.
    ``health_check_interval`` defaults to the client's, else 30 s: a silent connection
    is probed with PING after that long and dropped if the reply takes as long again.
    """

    commands: PubSubCommands = PUBSUB_COMMANDS

    def create_upstream(self, hub: Hub) -> Upstream:
        return PubSubFeed(
            hub,
            self.reader_connections(),
            commands=self.commands,
            prefix=self.prefix.encode(),
            health_check_interval=self.health_check_interval,
        )

    def publish_payload(self, topic: str, payload: bytes) -> None:
        try:
            self.client.publish(self.prefix + topic, payload)
        except RedisError as exc:
            raise PublishError(f"Could not publish to topic {topic!r}: {exc}") from exc
