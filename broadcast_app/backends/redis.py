"""Redis Pub/Sub backend: at-most-once broadcast across processes and machines.

Per process and channel: one Pub/Sub connection and one reader thread, whatever the
number of subscriptions; publishing uses the client's own connection pool. The Redis
channel of a topic is the topic name itself, so ``redis-cli PUBLISH`` and other
clients interoperate; ``prefix`` opts in to a namespace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ..exceptions import PublishError
from ._hub import Hub, Upstream
from ._pubsub import PUBSUB_COMMANDS, PubSubCommands, PubSubFeed, SubscriberConnection
from .base import BaseBroadcastChannel, positive_number

#: Health-check period of the Pub/Sub connection when the client sets none, in seconds.
DEFAULT_HEALTH_CHECK_INTERVAL = 30.0

#: Client options ``from_url()`` sets unless given: publishing to an unreachable Redis
#: fails within about a second instead of redis-py's multi-second default retry policy.
CLIENT_DEFAULTS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "socket_keepalive": True,
}

#: Options of the Pub/Sub connection that replace the client's: the engine reads bytes,
#: runs its own health checks and its own reconnect loop with backoff.
_SUBSCRIBER_CONNECTION_OPTIONS: dict[str, Any] = {
    "decode_responses": False,
    "health_check_interval": 0,
    "retry": Retry(ExponentialBackoff(), 0),
}
#: Socket timeouts of the Pub/Sub connection when the client sets none, in seconds. They
#: bound a handshake with a hung server; idle waits use the health-check period instead.
_SUBSCRIBER_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0}


def default_retry() -> Retry:
    """Two quick retries (50 ms, 100 ms) for a publish interrupted by a reconnect."""
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)


class RedisBroadcastChannel(BaseBroadcastChannel):
    """Broadcast over Redis Pub/Sub (``PUBLISH`` / ``SUBSCRIBE``), RESP2 or RESP3.

    ``client`` is a ``redis.Redis``; the channel never closes a client it was given.
    ``health_check_interval`` defaults to the client's, else 30 s: a silent connection
    is probed with PING after that long and dropped if the reply takes as long again.
    """

    commands: PubSubCommands = PUBSUB_COMMANDS

    def __init__(
        self,
        client: redis.Redis,
        *,
        buffer_size: int = 1024,
        subscribe_timeout: float = 10.0,
        prefix: str = "",
        health_check_interval: float | None = None,
    ) -> None:
        if not isinstance(client, redis.Redis):
            raise TypeError(f"client must be a redis.Redis, not {type(client).__name__}.")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}.")
        super().__init__(buffer_size=buffer_size, subscribe_timeout=subscribe_timeout)
        self.client = client
        self.prefix = prefix
        pool_options = client.connection_pool.connection_kwargs
        if health_check_interval is None:
            health_check_interval = (
                pool_options.get("health_check_interval") or DEFAULT_HEALTH_CHECK_INTERVAL
            )
        self.health_check_interval = positive_number("health_check_interval", health_check_interval)
        self._owns_client = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build a channel and its own client from a ``redis://``, ``rediss://`` or
        ``unix://`` URL.

        Options named like this class's keyword arguments go to the channel, the rest
        to ``redis.Redis.from_url`` over ``CLIENT_DEFAULTS`` and a short retry policy.
        The channel closes this client when it is closed.

        Raises:
            ValueError: the URL or an option is invalid.
        """
        channel_options = {
            name: options.pop(name)
            for name in ("buffer_size", "subscribe_timeout", "prefix", "health_check_interval")
            if name in options
        }
        client_options = {**CLIENT_DEFAULTS, "retry": default_retry(), **options}
        client = redis.Redis.from_url(url, **client_options)
        try:
            channel = cls(client, **channel_options)
        except BaseException:
            client.close()
            raise
        channel._owns_client = True
        return channel

    @classmethod
    def from_settings(
        cls, location: str | Sequence[str] | None, options: Mapping[str, Any]
    ) -> Self:
        """``BROADCAST_CHANNELS``: LOCATION is one URL, OPTIONS go to ``from_url()``."""
        if not isinstance(location, str):
            raise ValueError(
                f"{cls.__name__} needs a LOCATION that is one redis://, rediss:// or unix:// "
                f"URL, not {location!r}."
            )
        channel = cls.from_url(location, **options)
        pool = channel.client.connection_pool
        try:
            # redis-py keeps unknown options until it connects; a connection object built
            # here (no socket is opened) rejects them now.
            pool.connection_class(**pool.connection_kwargs)
        except TypeError:
            channel.close()
            raise
        return channel

    def _subscriber_connection(self) -> SubscriberConnection:
        pool = self.client.connection_pool
        options = dict(pool.connection_kwargs)
        for name, value in _SUBSCRIBER_TIMEOUTS.items():
            if options.get(name) is None:
                options[name] = value
        options.update(_SUBSCRIBER_CONNECTION_OPTIONS)
        return cast(SubscriberConnection, pool.connection_class(**options))

    def create_upstream(self, hub: Hub[bytes]) -> Upstream:
        return PubSubFeed(
            hub,
            self._subscriber_connection,
            commands=self.commands,
            prefix=self.prefix.encode(),
            health_check_interval=self.health_check_interval,
        )

    def publish_payload(self, topic: str, payload: bytes) -> None:
        try:
            self.client.publish(self.prefix + topic, payload)
        except RedisError as exc:
            raise PublishError(f"Could not publish to topic {topic!r}: {exc}") from exc

    def close(self) -> None:
        super().close()
        if self._owns_client:
            self.client.close()
