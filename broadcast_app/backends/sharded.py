"""Sharded Redis Pub/Sub backend (``SPUBLISH`` / ``SSUBSCRIBE``, Redis 7+).

At-most-once broadcast, like the Pub/Sub backend, that scales out with a Redis Cluster:
a shard channel lives on the primary serving its hash slot, so a message travels within
one shard instead of to every node of the cluster. Per process and channel: one
connection and one reader thread per primary that serves subscribed topics (on a single
server, one of each); publishing uses the client's own connections.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Self
from urllib.parse import urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

from ..exceptions import PublishError
from ._client import CLIENT_DEFAULTS, DEFAULT_HEALTH_CHECK_INTERVAL, client_from_url
from ._connection import subscriber_connection
from ._feed_shards import CLUSTER_ERRORS, ShardFeed, ShardRouter
from ._hub import Hub, Upstream
from .base import BaseBroadcastChannel, positive_number

#: Builds a ``RedisCluster`` (whose constructor discovers the topology: I/O).
ClusterFactory = Callable[[], RedisCluster]

_CHANNEL_OPTIONS = ("buffer_size", "subscribe_timeout", "prefix", "health_check_interval")
#: Options a ``redis.Redis`` takes besides where to connect.
_CLIENT_OPTIONS = frozenset(inspect.signature(redis.Redis.__init__).parameters) - {
    "self",
    "host",
    "port",
    "unix_socket_path",
    "connection_pool",
}
#: Options a ``RedisCluster`` takes besides its nodes' client options and where to connect.
_CLUSTER_OPTIONS = frozenset(inspect.signature(RedisCluster.__init__).parameters) - {
    "self",
    "host",
    "port",
    "startup_nodes",
    "url",
    "kwargs",
}


class ShardedRedisBroadcastChannel(BaseBroadcastChannel):
    """Broadcast over sharded Pub/Sub (``SPUBLISH`` / ``SSUBSCRIBE``), RESP2 or RESP3.

    ``client`` is a ``redis.Redis`` (one server), a ``redis.cluster.RedisCluster``, or
    a function returning a ``RedisCluster``, called on first use (building one
    discovers the topology); the channel never closes a client it was given. The other
    arguments are those of ``RedisBroadcastChannel``.

    On a cluster, a topic's slot is that of its channel name, so topics named with the
    same ``{tag}`` share a shard. When a slot moves or a replica takes over, the
    subscriptions of the moved topics continue on the new primary and their ``gaps``
    grow. Publishing during a failover raises ``PublishError`` once the cluster
    client's retries (``retry=``, default 3, each after a topology refresh) are spent.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster | ClusterFactory,
        *,
        buffer_size: int = 1024,
        subscribe_timeout: float = 10.0,
        prefix: str = "",
        health_check_interval: float | None = None,
    ) -> None:
        if isinstance(client, redis.Redis | RedisCluster):
            self._client: redis.Redis | RedisCluster | None = client
            self._build_cluster: ClusterFactory | None = None
        elif callable(client):
            self._client, self._build_cluster = None, client
        else:
            raise TypeError(
                "client must be a redis.Redis, a redis.cluster.RedisCluster or a function "
                f"returning a RedisCluster, not {type(client).__name__}."
            )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}.")
        super().__init__(buffer_size=buffer_size, subscribe_timeout=subscribe_timeout)
        self.prefix = prefix
        self.is_cluster = not isinstance(client, redis.Redis)
        if health_check_interval is None:
            health_check_interval = (
                self._client_options().get("health_check_interval") or DEFAULT_HEALTH_CHECK_INTERVAL
            )
        self.health_check_interval = positive_number("health_check_interval", health_check_interval)
        self._client_lock = threading.Lock()
        self._owns_client = False

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The client; built on first use if the channel was given a function.

        Raises:
            RedisError, RedisClusterException: the cluster client could not be built.
        """
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    assert self._build_cluster is not None
                    self._client = self._build_cluster()
                client = self._client
        return client

    def _cluster(self) -> RedisCluster:
        client = self.client
        assert isinstance(client, RedisCluster)
        return client

    def _client_options(self) -> Mapping[str, Any]:
        if isinstance(self._client, redis.Redis):
            return self._client.connection_pool.connection_kwargs
        if isinstance(self._client, RedisCluster):
            return self._client.nodes_manager.connection_kwargs
        return {}

    @classmethod
    def from_url(cls, url: str | Sequence[str], **options: Any) -> Self:
        """Build a channel and its own client from one URL, or a cluster from seed URLs.

        A list of ``redis://`` or ``rediss://`` URLs (one suffices) means a Redis
        Cluster, as does one URL with ``cluster=True``; the seeds differ only in host
        and port, and the client connects on first use. A single URL without it means
        one server (``unix://`` too). Options named like this class's keyword arguments
        go to the channel, the rest to the client (``redis.Redis`` or ``RedisCluster``)
        over ``CLIENT_DEFAULTS``; a single server also gets ``default_retry()``. The
        channel closes this client when it is closed.

        Raises:
            ValueError: a URL or an option is invalid.
        """
        channel_options = {name: options.pop(name) for name in _CHANNEL_OPTIONS if name in options}
        cluster = options.pop("cluster", not isinstance(url, str))
        if not isinstance(cluster, bool):
            raise ValueError(f"cluster must be True or False, not {cluster!r}.")
        client: redis.Redis | ClusterFactory
        if cluster:
            client = _cluster_factory([url] if isinstance(url, str) else url, options)
        elif isinstance(url, str):
            client = client_from_url(url, options)
        else:
            raise ValueError(
                f"A list of URLs means a Redis Cluster; cluster=False contradicts {url!r}."
            )
        try:
            channel = cls(client, **channel_options)
        except BaseException:
            if isinstance(client, redis.Redis):
                client.close()
            raise
        channel._owns_client = True
        return channel

    @classmethod
    def from_settings(
        cls, location: str | Sequence[str] | None, options: Mapping[str, Any]
    ) -> Self:
        """``BROADCAST_CHANNELS``: LOCATION is one URL or a list of cluster seed URLs;
        OPTIONS go to ``from_url()`` (``"cluster": True`` makes one URL a seed)."""
        if location is None or (not isinstance(location, str) and not location):
            raise ValueError(
                f"{cls.__name__} needs a LOCATION: a redis://, rediss:// or unix:// URL, or "
                f"a list of Redis Cluster seed URLs, not {location!r}."
            )
        cluster = options.get("cluster", not isinstance(location, str))
        known = {*_CHANNEL_OPTIONS, "cluster", *_CLIENT_OPTIONS}
        if cluster is True:
            known |= _CLUSTER_OPTIONS
        # redis-py keeps unknown options until it connects; name them now.
        unknown = sorted(set(options) - known)
        if unknown:
            client = "RedisCluster" if cluster is True else "redis.Redis"
            raise TypeError(f"Unknown options for {cls.__name__} or {client}: {unknown}.")
        return cls.from_url(location, **options)

    def create_upstream(self, hub: Hub) -> Upstream:
        prefix = self.prefix.encode()
        if self.is_cluster:
            return ShardRouter(
                hub, self._cluster, prefix=prefix, health_check_interval=self.health_check_interval
            )
        client = self.client
        assert isinstance(client, redis.Redis)
        return ShardFeed(
            hub,
            partial(subscriber_connection, client),
            prefix=prefix,
            health_check_interval=self.health_check_interval,
        )

    def publish_payload(self, topic: str, payload: bytes) -> None:
        try:
            self.client.spublish(self.prefix + topic, payload)
        except CLUSTER_ERRORS as exc:
            raise PublishError(f"Could not publish to topic {topic!r}: {exc}") from exc

    def close(self) -> None:
        super().close()
        client = self._client
        if not self._owns_client or client is None:
            return
        if isinstance(client, RedisCluster):
            # Node clients built from a URL do not close their pools themselves.
            nodes = list(client.nodes_manager.nodes_cache.values())
            client.close()
            for node in nodes:
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.disconnect()
        else:
            client.close()


def _cluster_factory(urls: Sequence[str], options: dict[str, Any]) -> ClusterFactory:
    """Return a function building a ``RedisCluster`` seeded with ``urls``. No I/O.

    Raises:
        ValueError: ``urls`` is empty, holds an unusable URL or seeds that differ in
            more than host and port, or a database other than 0 is asked for.
    """
    if isinstance(urls, str) or not urls or not all(isinstance(url, str) for url in urls):
        raise ValueError(f"Give a Redis Cluster as a non-empty list of seed URLs, not {urls!r}.")
    seeds: list[tuple[str, int]] = []
    settings = set()
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"Invalid port in Redis Cluster seed {url!r}.") from exc
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"A Redis Cluster seed must be a redis:// or rediss:// URL: {url!r}.")
        if parts.path.strip("/") not in ("", "0") or "db" in options:
            raise ValueError(f"A Redis Cluster has only database 0: {url!r}.")
        seeds.append((parts.hostname, port))
        settings.add((parts.scheme, parts.username, parts.password, parts.query))
    if len(settings) > 1:
        raise ValueError(f"Redis Cluster seeds must differ only in host and port: {urls!r}.")

    def build() -> RedisCluster:
        # The first seed comes as the URL, which also carries credentials and TLS.
        others = [ClusterNode(host, port) for host, port in seeds[1:]]  # type: ignore[no-untyped-call]
        return RedisCluster(url=urls[0], startup_nodes=others, **{**CLIENT_DEFAULTS, **options})

    return build
