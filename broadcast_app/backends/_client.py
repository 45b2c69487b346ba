"""What the Redis backends share: the client, its defaults, and the channel base.

A ``RedisClientChannel`` publishes through its client's connections and reads through
connections of its own, one per process and server, built from the client's settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar, cast
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ._connection import SubscriberConnection, subscriber_connection
from ._options import (
    CLIENT_OPTIONS,
    channel_options,
    check_client_options,
    check_url_database,
    unknown_options_error,
)
from .base import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_SUBSCRIBE_TIMEOUT,
    BaseBroadcastChannel,
    positive_number,
)

#: The client type of a channel: one server, or (sharded only) a Redis Cluster too.
ClientT = TypeVar("ClientT", bound=redis.Redis | RedisCluster)

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


def close_client(client: redis.Redis | RedisCluster) -> None:
    """Close ``client`` and release its connections, a cluster's node pools included."""
    if isinstance(client, RedisCluster):
        # Node clients built from a URL do not close their pools themselves.
        nodes = list(client.nodes_manager.nodes_cache.values())
        client.close()
        for node in nodes:
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
    else:
        client.close()


class RedisClientChannel(BaseBroadcastChannel, Generic[ClientT]):
    """A channel reached through a redis-py client: the base of every Redis backend.

    ``client`` is the client, or (where a backend accepts one) a function returning it,
    called on first use. The channel never closes a client it was given, and closes
    the one ``from_url()`` built. ``prefix`` is prepended to every Redis name the
    channel derives from a topic. ``health_check_interval`` defaults to the client's,
    else ``DEFAULT_HEALTH_CHECK_INTERVAL``: a reader connection silent for that long is
    probed, and dropped if the answer takes as long again.

    Subclasses add keyword-only arguments to ``__init__`` for their own options, and
    may override ``check_client()`` and ``client_for_url()``.
    """

    def __init__(
        self,
        client: ClientT | Callable[[], ClientT],
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        subscribe_timeout: float = DEFAULT_SUBSCRIBE_TIMEOUT,
        prefix: str = "",
        health_check_interval: float | None = None,
    ) -> None:
        self._client: ClientT | None = None
        self._build_client: Callable[[], ClientT] | None = None
        checked = self.check_client(client)
        if isinstance(checked, redis.Redis | RedisCluster):
            self._client = checked
        else:
            self._build_client = checked
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}.")
        super().__init__(buffer_size=buffer_size, subscribe_timeout=subscribe_timeout)
        self.prefix = prefix
        if health_check_interval is None:
            health_check_interval = (
                self._client_options().get("health_check_interval") or DEFAULT_HEALTH_CHECK_INTERVAL
            )
        self.health_check_interval = positive_number("health_check_interval", health_check_interval)
        self._client_lock = threading.Lock()
        self._owns_client = False

    @classmethod
    def check_client(cls, client: object) -> ClientT | Callable[[], ClientT]:
        """Return ``client`` if this channel can use it; this default takes a ``redis.Redis``.

        Raises:
            TypeError: ``client`` is of another type.
        """
        if not isinstance(client, redis.Redis):
            raise TypeError(f"client must be a redis.Redis, not {type(client).__name__}.")
        return cast(ClientT, client)

    @property
    def client(self) -> ClientT:
        """The client; built on first use if the channel was given a function.

        Raises:
            RedisError, RedisClusterException: the function could not build the client.
        """
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    assert self._build_client is not None
                    self._client = self._build_client()
                client = self._client
        return client

    def _client_options(self) -> Mapping[str, Any]:
        """The connection options of a client given (not of one still to be built)."""
        if isinstance(self._client, redis.Redis):
            return self._client.connection_pool.connection_kwargs
        if isinstance(self._client, RedisCluster):
            return self._client.nodes_manager.connection_kwargs
        return {}

    @classmethod
    def channel_option_names(cls) -> frozenset[str]:
        """The keyword-only arguments of ``__init__``: the channel's own options."""
        return frozenset(channel_options(cls))

    @classmethod
    def from_url(cls, url: str | Sequence[str], **options: Any) -> Self:
        """Build a channel and its own client from a URL; no I/O.

        Options named like a keyword argument of ``__init__`` go to the channel, the
        rest to the client (see ``client_for_url()``). The channel closes this client
        when it is closed.

        Raises:
            ValueError: the URL or an option's value is invalid.
            TypeError: an option is unknown.
        """
        names = cls.channel_option_names()
        channel_options = {name: options.pop(name) for name in names & set(options)}
        client = cls.client_for_url(url, options)
        try:
            channel = cls(client, **channel_options)
        except BaseException:
            if isinstance(client, redis.Redis | RedisCluster):
                close_client(client)
            raise
        channel._owns_client = True
        return channel

    @classmethod
    def client_for_url(
        cls, url: str | Sequence[str], options: dict[str, Any]
    ) -> ClientT | Callable[[], ClientT]:
        """Return the client ``from_url()`` passes to the channel; no I/O. This default
        takes one ``redis://``, ``rediss://`` or ``unix://`` URL: ``client_from_url()``.

        Raises:
            ValueError: the URL or an option's value is invalid.
            TypeError: an option is unknown.
        """
        if not isinstance(url, str):
            raise ValueError(f"{cls.__name__} needs one URL, not {url!r}.")
        return cast(ClientT, client_from_url(url, options))

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
        known = cls.channel_option_names() | CLIENT_OPTIONS
        unknown = set(options) - known
        if unknown:
            raise unknown_options_error(cls, unknown, known)
        return cls.from_url(location, **options)

    def reader_connection(self) -> SubscriberConnection:
        """Return a new, unconnected connection for a reader thread to own.

        Only for a client of one server: a cluster's router connects to each node.
        """
        client = self.client
        assert isinstance(client, redis.Redis)
        return subscriber_connection(client)

    def close(self) -> None:
        super().close()
        client = self._client
        if self._owns_client and client is not None:
            close_client(client)
