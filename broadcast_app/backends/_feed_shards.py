"""A hub's feed from sharded Pub/Sub: one ``PubSubFeed`` per shard, topics routed by slot.

A shard channel lives on the primary that serves its hash slot (computed like a key's,
so ``{tag}`` in a name picks the slot). The router keeps one feed, hence one connection
and one reader thread, per primary that serves a subscribed topic, and follows the
cluster when slots move or a replica takes over.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from ..exceptions import BroadcastChannelError
from ._client import LazyClient
from ._connection import ConnectionFactory, subscriber_connection
from ._feed_pubsub import SHARDED_COMMANDS, PubSubFeed
from ._hub import Hub, Upstream
from ._inbox import Latch

logger = logging.getLogger("broadcast_app")

#: Seconds to wait before each further topology refresh while the cluster client's slot
#: table still names the node that just ended a topic's subscription (the node queried
#: may not have heard of the change yet).
STALE_TOPOLOGY_DELAYS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)

#: Least seconds between two topology refreshes for lost connections: a reader retries
#: an unreachable node several times a second, the cluster need not be asked as often.
REFRESH_INTERVAL = 0.5

#: Errors of redis-py's cluster client; ``RedisClusterException`` is no ``RedisError``.
CLUSTER_ERRORS = (RedisError, RedisClusterException, OSError)
#: Error replies that mean "ask another node", not "you may not subscribe".
TOPOLOGY_ERRORS = (MovedError, AskError, ClusterDownError, TryAgainError)


class ShardFeed(PubSubFeed):
    """A ``PubSubFeed`` of shard channels (``SSUBSCRIBE``) on one server.

    Without a router, a subscription the server ends unasked is recovered like a lost
    connection; with one, the router is told, and told of every lost connection. A
    ``MOVED``-like error reply counts as a lost connection, so the router re-routes.
    """

    def __init__(
        self,
        hub: Hub,
        connect: ConnectionFactory,
        *,
        prefix: bytes,
        health_check_interval: float,
        router: ShardRouter | None = None,
        node: str = "",
    ) -> None:
        super().__init__(
            hub,
            connect,
            commands=SHARDED_COMMANDS,
            prefix=prefix,
            health_check_interval=health_check_interval,
            name=f"shard-{node}" if node else "shard",
        )
        self.node = node
        self._router = router

    def _refused(self, topic: str, error: ResponseError) -> None:
        if isinstance(error, TOPOLOGY_ERRORS):
            raise error
        super()._refused(topic, error)

    def _revoked(self, topic: str) -> None:
        if self._router is None:
            super()._revoked(topic)
        else:
            self._router.revoked(self, topic)

    def _disconnected(self, error: BaseException | None) -> None:
        if self._router is not None:
            self._router.disconnected(self, error)


class ShardRouter(Upstream):
    """Feeds a hub from the shard channels of a Redis Cluster, one ``ShardFeed`` per primary.

    A topic is listened to on the primary that serves its slot in the cluster client's
    slot table. When a node ends subscriptions unasked (its slot moved, or a failover
    demoted it), or a connection to it fails, the reader thread that saw it refreshes
    the slot table and moves the topics whose slot has a new primary, with their
    subscriptions; their gaps are marked. A feed left without topics by such a change
    is closed; one emptied by unsubscribing stays, like ``RedisBroadcastChannel``'s.

    Until the cluster client is built (topology discovery, once per channel), topics
    wait in ``_pending`` while a discovery thread builds it, so that no lock is held
    and no subscriber's thread is tied up meanwhile; a topic whose node cannot be found
    fails its starting subscriptions. Thread-safe; ``_lock`` is taken after the hub's
    lock and before a feed's.
    """

    def __init__(
        self,
        hub: Hub,
        cluster: LazyClient[RedisCluster],
        *,
        prefix: bytes,
        health_check_interval: float,
    ) -> None:
        self._hub = hub
        self._lazy_cluster = cluster
        self._prefix = prefix
        self._health_check_interval = health_check_interval
        # Re-entrant: the garbage collector may release a subscription (and so call
        # unlisten) in a thread that holds the lock.
        self._lock = threading.RLock()
        self._feeds: dict[str, ShardFeed] = {}
        self._routes: dict[str, ShardFeed] = {}
        # Topics waiting for the topology, and topics whose node could not be found
        # (until the hub, told of it, unlistens them).
        self._pending: dict[str, Latch] = {}
        self._failed: dict[str, Latch] = {}
        self._discovery: threading.Thread | None = None
        self._refreshed_at = -REFRESH_INTERVAL
        self._closed = False
        self._closing = threading.Event()

    def nodes(self) -> dict[str, list[str]]:
        """The nodes (``host:port``) this router has a feed for, with their topics."""
        with self._lock:
            nodes: dict[str, list[str]] = {node: [] for node in self._feeds}
            for topic, feed in self._routes.items():
                nodes[feed.node].append(topic)
            return nodes

    # -- Upstream, called by the hub under its lock --------------------------------------

    def listen(self, topic: str) -> Latch:
        with self._lock:
            if self._lazy_cluster.client is None:
                latch = self._pending[topic] = Latch()
                self._start_discovery()
                return latch
            try:
                feed = self._feed(self._primary(topic))
            except CLUSTER_ERRORS as exc:
                raise BroadcastChannelError(
                    f"Cannot find the Redis Cluster node of topic {topic!r}: {exc}"
                ) from exc
            self._routes[topic] = feed
            return feed.listen(topic)

    def confirmation(self, topic: str) -> Latch:
        with self._lock:
            latch = self._pending.get(topic) or self._failed.get(topic)
            if latch is not None:
                return latch
            return self._routes[topic].confirmation(topic)

    def unlisten(self, topic: str) -> None:
        with self._lock:
            self._pending.pop(topic, None)
            self._failed.pop(topic, None)
            feed = self._routes.pop(topic, None)
            if feed is not None:
                feed.unlisten(topic)

    # -- topology discovery, on a thread of its own ----------------------------------------

    def _start_discovery(self) -> None:
        """Start the discovery thread unless it runs. Call with ``_lock`` held."""
        if self._discovery is None and not self._closed:
            self._discovery = threading.Thread(
                target=self._discover, name="broadcast_app-cluster-discovery", daemon=True
            )
            self._discovery.start()

    def _discover(self) -> None:
        """Build the cluster client, then listen to the pending topics on their nodes."""
        error: BaseException | None = None
        try:
            self._lazy_cluster.get()
        except Exception as exc:  # Reported to the subscriptions waiting for it.
            error = exc
        failed: list[tuple[str, Latch, BaseException]] = []
        with self._lock:
            self._discovery = None
            if self._closed:
                return
            pending, self._pending = self._pending, {}
            for topic, latch in pending.items():
                cause = error
                if cause is None:
                    try:
                        feed = self._feed(self._primary(topic))
                    except CLUSTER_ERRORS as exc:
                        cause = exc
                    else:
                        self._routes[topic] = feed
                        feed.listen(topic, latch)
                        continue
                failed.append((topic, latch, cause))
                self._failed[topic] = latch
        for topic, latch, cause in failed:
            message = f"Cannot find the Redis Cluster node of topic {topic!r}: {cause}"
            latch.fail(BroadcastChannelError(message))
            # Not under _lock: the hub's lock comes first.
            self._hub.refuse(topic)

    def abandon(self) -> None:
        self._closing.set()
        self._closed = True
        for feed in list(self._feeds.values()):
            feed.abandon()

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self._closed = True
            feeds = list(self._feeds.values())
            self._feeds.clear()
            self._routes.clear()
            self._pending.clear()
            self._failed.clear()
        # Not under the lock: a reader thread may be waiting for it in a hook below.
        for feed in feeds:
            feed.close()

    # -- topology changes, reported by the feeds' reader threads -------------------------

    def revoked(self, feed: ShardFeed, topic: str) -> None:
        """``feed``'s node ended the subscription to ``topic``: subscribe where it lives now.

        A node that loses a slot ends all its channels of that slot at once; the first
        one refreshes the slot table, the others find it fresh.
        """
        for delay in STALE_TOPOLOGY_DELAYS:
            if self._primary_name(topic) != feed.node or self._closing.wait(delay):
                break
            self._refresh(reason=f"{feed.node} ended the subscription to {topic!r}")
        with self._lock:
            if self._closed or self._routes.get(topic) is not feed:
                return
            self._reroute(topic, feed, self._primary_or(topic, feed))
            self._close_if_idle(feed)
        self._hub.mark_gap([topic])

    def disconnected(self, feed: ShardFeed, error: BaseException | None) -> None:
        """``feed`` lost its connection: move the topics whose slot has a new primary."""
        if time.monotonic() - self._refreshed_at >= REFRESH_INTERVAL:
            self._refresh(reason=f"lost the connection to {feed.node}")
        if isinstance(error, MovedError):
            # The freshest news there is, maybe newer than what the refresh was told.
            try:
                self._lazy_cluster.get().nodes_manager.move_slot(error)
            except Exception as exc:  # A reader thread must outlive any error.
                logger.warning("Cannot apply %r to the Redis Cluster slot table (%s).", error, exc)
        with self._lock:
            if self._closed or self._feeds.get(feed.node) is not feed:
                return
            for topic in [topic for topic, owner in self._routes.items() if owner is feed]:
                target = self._primary_or(topic, feed)
                if target is not feed:
                    self._reroute(topic, feed, target)
            self._close_if_idle(feed)

    # -- helpers (call with _lock held unless said otherwise) ----------------------------

    def _primary_name(self, topic: str) -> str | None:
        """The ``host:port`` of ``topic``'s primary per the slot table, if it names one."""
        try:
            return self._primary(topic).name
        except CLUSTER_ERRORS:
            return None

    def _primary(self, topic: str) -> ClusterNode:
        slot = key_slot(self._prefix + topic.encode())
        node: ClusterNode = self._lazy_cluster.get().nodes_manager.get_node_from_slot(slot)
        return node

    def _feed(self, node: ClusterNode) -> ShardFeed:
        feed = self._feeds.get(node.name)
        if feed is None:
            client = self._lazy_cluster.get().get_redis_connection(node)
            feed = self._feeds[node.name] = ShardFeed(
                self._hub,
                partial(subscriber_connection, client),
                prefix=self._prefix,
                health_check_interval=self._health_check_interval,
                router=self,
                node=node.name,
            )
        return feed

    def _primary_or(self, topic: str, fallback: ShardFeed) -> ShardFeed:
        """The feed of ``topic``'s primary; ``fallback`` if the slot table has none now
        (the next topology event retries)."""
        try:
            return self._feed(self._primary(topic))
        except CLUSTER_ERRORS:
            return fallback

    def _reroute(self, topic: str, source: ShardFeed, target: ShardFeed) -> None:
        """Move ``topic`` from ``source``, which no longer receives it, to ``target``."""
        latch = source.forget(topic)
        self._routes[topic] = target
        # Waiters on an unconfirmed latch keep waiting for the new confirmation; later
        # subscribers must wait for it too.
        target.listen(topic, latch if latch is not None and not latch.is_set() else None)

    def _close_if_idle(self, feed: ShardFeed) -> None:
        if self._feeds.get(feed.node) is feed and feed not in self._routes.values():
            del self._feeds[feed.node]
            feed.close()  # From its own reader thread: the thread ends by itself.

    def _refresh(self, *, reason: str) -> None:
        """Reload the cluster client's slot table. Blocking I/O; call without the lock."""
        self._refreshed_at = time.monotonic()
        logger.info("Redis Cluster topology may have changed (%s); refreshing it.", reason)
        try:
            self._lazy_cluster.get().nodes_manager.initialize()
        except Exception as exc:  # A reader thread must outlive any error.
            logger.warning("Cannot refresh the Redis Cluster topology (%s).", exc)
