"""Sharded Redis Pub/Sub backend (``SPUBLISH`` / ``SSUBSCRIBE``, Redis 7+).

At-most-once broadcast, like the Pub/Sub backend, that scales out with a Redis Cluster:
a shard channel lives on the primary serving its hash slot, so a message travels within
one shard instead of to every node of the cluster. Per process and channel: one
connection and one reader thread per primary that serves subscribed topics (on a single
server, one of each); publishing uses the client's own connections.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

from ..exceptions import PublishError
from ._client import CLIENT_DEFAULTS, RedisClientChannel, client_from_url
from ._feed_shards import CLUSTER_ERRORS, ShardFeed, ShardRouter
from ._hub import Hub, Upstream
from ._options import CLIENT_OPTIONS, check_client_options, unknown_options_error

#: Builds a ``RedisCluster`` (whose constructor discovers the topology: I/O).
ClusterFactory = Callable[[], RedisCluster]

#: Options a ``RedisCluster`` takes besides its nodes' client options and where to connect.
_CLUSTER_OPTIONS = frozenset(inspect.signature(RedisCluster.__init__).parameters) - {
    "self",
    "host",
    "port",
    "startup_nodes",
    "url",
    "kwargs",
}


class ShardedRedisBroadcastChannel(RedisClientChannel[redis.Redis | RedisCluster]):
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

    @classmethod
    def check_client(cls, client: object) -> redis.Redis | RedisCluster | ClusterFactory:
        if isinstance(client, redis.Redis | RedisCluster) or callable(client):
            return client
        raise TypeError(
            "client must be a redis.Redis, a redis.cluster.RedisCluster or a function "
            f"returning a RedisCluster, not {type(client).__name__}."
        )

    @property
    def is_cluster(self) -> bool:
        """Whether the client is (or will be) a ``RedisCluster`` rather than one server."""
        return not isinstance(self._client, redis.Redis)

    def _cluster(self) -> RedisCluster:
        client = self.client
        assert isinstance(client, RedisCluster)
        return client

    @classmethod
    def client_for_url(
        cls, url: str | Sequence[str], options: dict[str, Any]
    ) -> redis.Redis | ClusterFactory:
        """One URL, or a cluster from seed URLs; the client connects on first use.

        A list of ``redis://`` or ``rediss://`` URLs (one suffices) means a Redis
        Cluster, as does one URL with the option ``cluster=True``; the seeds differ
        only in host and port. A single URL without it means one server (``unix://``
        too). The client (``redis.Redis`` or ``RedisCluster``) gets the options over
        ``CLIENT_DEFAULTS``; a single server also gets ``default_retry()``.

        Raises:
            ValueError: a URL or an option is invalid.
        """
        cluster = options.pop("cluster", not isinstance(url, str))
        if not isinstance(cluster, bool):
            raise ValueError(f"cluster must be True or False, not {cluster!r}.")
        if cluster:
            return _cluster_factory([url] if isinstance(url, str) else url, options)
        if isinstance(url, str):
            return client_from_url(url, options)
        raise ValueError(
            f"A list of URLs means a Redis Cluster; cluster=False contradicts {url!r}."
        )

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
        known = {*cls.channel_option_names(), "cluster", *CLIENT_OPTIONS}
        if cluster is True:
            known |= _CLUSTER_OPTIONS
        # redis-py keeps unknown options until it connects; name them now.
        unknown = set(options) - known
        if unknown:
            raise unknown_options_error(cls, unknown, known)
        if cluster is True:
            check_client_options(options)  # A single server's client checks its own.
        return cls.from_url(location, **options)

    def create_upstream(self, hub: Hub) -> Upstream:
        prefix = self.prefix.encode()
        if self.is_cluster:
            return ShardRouter(
                hub, self._cluster, prefix=prefix, health_check_interval=self.health_check_interval
            )
        return ShardFeed(
            hub,
            self.reader_connection,
            prefix=prefix,
            health_check_interval=self.health_check_interval,
        )

    def publish_payload(self, topic: str, payload: bytes) -> None:
        try:
            self.client.spublish(self.prefix + topic, payload)
        except CLUSTER_ERRORS as exc:
            raise PublishError(f"Could not publish to topic {topic!r}: {exc}") from exc


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
