"""Broadcast channel backends: one module per technology, on one shared engine.

The backends are ``memory`` (this process only), ``redis`` (Pub/Sub), ``sharded``
(sharded Pub/Sub, for a Redis Cluster) and ``streams`` (Redis Streams: history and
cursors). ``base`` and ``_client`` hold what they share; every other module is the
engine underneath, named after what it holds. Nothing here imports Django.

Glossary of the engine:

hub (``_hub.Hub``)
    A channel's multiplexer in one process: asks its upstream to listen to a topic
    when the topic's first local subscription starts, and to stop after the last one
    leaves; routes each message it is fed to the inboxes of that topic.
upstream (``_hub.Upstream``)
    What feeds a hub: a feed, a router, or in memory one that does nothing (the
    publisher hands its messages to the hub itself).
feed (``_feed_pubsub``, ``_feed_shards``, ``_feed_streams``)
    An upstream that reads one Redis connection in one reader thread
    (``_connection.ConnectionReader``): it reconnects with backoff, listens again, and
    marks a gap where messages may have been missed.
router (``_feed_shards.ShardRouter``)
    The upstream of a Redis Cluster: one shard feed per primary, each topic routed to
    the primary of its hash slot, and moved when the slot moves.
inbox (``_inbox.Inbox``)
    The bounded buffer of one subscription: filled by any thread without blocking,
    drained by its one consumer (a thread, or an asyncio task); the oldest message is
    dropped on overflow.
latch (``_inbox.Latch``)
    A one-shot flag: the upstream sets it when Redis confirms a topic (or fails it
    with the reason), and a starting subscription waits on it.
subscription (``subscription.ChannelSubscription``, ``_stream_replay.StreamsSubscription``)
    The public ``Subscription``: a view of one inbox that joins the hub when it starts
    and leaves on close or garbage collection. The Streams one first replays the
    history after a cursor, then hands over to the live messages.
"""
