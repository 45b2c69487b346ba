"""What the single-server Redis backends share: the client, and the reader connection.

A ``RedisClientChannel`` publishes through the client's connection pool and reads
through one dedicated connection per process, built from the pool's settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ._connection import SubscriberConnection, subscriber_connection
from ._options import (
    CLIENT_OPTIONS,
    channel_options,
    check_client_options,
    check_url_database,
    unknown_options_error,
)
from .base import BaseBroadcastChannel, positive_number

#: Health-check period of the reader connection when the client sets none, in seconds.
DEFAULT_HEALTH_CHECK_INTERVAL = 30.0

#: Client options ``from_url()`` sets unless given: publishing to an unreachable Redis
#: fails within about a second instead of redis-py's multi-second default retry policy.
CLIENT_DEFAULTS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "socket_keepalive": True,
}


def default_retry() -> Retry:
    """Two quick retries (50 ms, 100 ms) for a publish that found its connection broken
    (typically a pooled connection to a Redis that restarted). A timeout is not retried:
    the server is hung, and retrying would multiply the wait."""
    return Retry(
        ExponentialBackoff(cap=0.5, base=0.05),
        2,
        supported_errors=(redis.exceptions.ConnectionError,),
    )


def client_from_url(url: str, options: Mapping[str, Any]) -> redis.Redis:
    """Return a ``redis.Redis`` for ``url`` with ``options`` over ``CLIENT_DEFAULTS`` and
    ``default_retry()``. No I/O.

    Raises:
        ValueError: the URL or an option's value is invalid.
        TypeError: an option is unknown.
    """
    check_url_database(url)
    defaults = {**CLIENT_DEFAULTS, "retry": default_retry()}
    if urlsplit(url).scheme == "unix":
        del defaults["socket_keepalive"]  # A TCP option; Unix socket connections refuse it.
    client = redis.Redis.from_url(url, **{**defaults, **options})
    pool = client.connection_pool
    try:
        # The URL's query is parsed by now: its options are checked with the others.
        check_client_options(pool.connection_kwargs)
        # redis-py keeps unknown options until it connects; a connection object built
        # here (no socket is opened) rejects a misspelt one now.
        pool.connection_class(**pool.connection_kwargs)
    except BaseException:
        client.close()
        raise
    return client


class RedisClientChannel(BaseBroadcastChannel):
    """A channel on one Redis server, reached through a ``redis.Redis`` client.

    The channel never closes a client it was given. ``prefix`` is prepended to every
    Redis name the channel derives from a topic. ``health_check_interval`` defaults to
    the client's, else 30 s: a reader connection silent for that long is probed, and
    dropped if the answer takes as long again.
    """

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
            ValueError: the URL or an option's value is invalid.
            TypeError: an option is unknown.
        """
        own = channel_options(cls)
        unknown = set(options) - set(own) - CLIENT_OPTIONS
        if unknown:
            raise unknown_options_error(cls, unknown, [*own, *CLIENT_OPTIONS])
        mine = {name: options.pop(name) for name in own if name in options}
        client = client_from_url(url, options)
        try:
            channel = cls(client, **mine)
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
        return cls.from_url(location, **options)

    def reader_connection(self) -> SubscriberConnection:
        """Return a new, unconnected connection for a reader thread to own."""
        return subscriber_connection(self.client)

    def close(self) -> None:
        super().close()
        if self._owns_client:
            self.client.close()
