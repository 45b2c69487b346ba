"""Redis Streams backend: broadcast with history, so that a subscriber can resume.

Each topic is a stream, at the key ``prefix + topic``. Publishing appends an entry
(``XADD``, field ``data``) and refreshes the key's expiry in one script, so no stream
is ever left without a TTL: a topic's history lasts ``retention_seconds`` after its
last message, and ``maxlen`` (optional) caps it at about that many entries.

Per process and channel: one reader connection and one reader thread, whatever the
number of subscriptions, plus the client's pool for publishing and replays.

Delivery: a consumer that keeps the cursor of the last message it handled and
subscribes again from it after a disconnect receives every message published
meanwhile that is still retained (at-least-once within the retention window: it may
see again the messages it had not acknowledged to itself). Without a cursor, delivery
is at-most-once, like Pub/Sub.
"""

from __future__ import annotations

import redis
from redis.exceptions import RedisError

from ..channel import ChannelFeatures, CursorSubscriber, CursorTopic
from ..exceptions import PublishError
from ._client import RedisClientChannel
from ._feed_streams import StreamsFeed
from ._hub import Hub, Upstream
from ._stream_replay import REPLAY_PAGE, StreamHistory, StreamsSubscription
from ._stream_scripts import APPEND_SCRIPT, PROBE_SCRIPT
from .base import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_SUBSCRIBE_TIMEOUT,
    ChannelTopic,
    TopicSubscriber,
    positive_int,
    positive_number,
    validate_topic_name,
)
from .cursors import parse_cursor

#: Seconds a topic's history outlives its last message, unless the channel says otherwise.
DEFAULT_RETENTION_SECONDS = 600.0

__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "REPLAY_PAGE",
    "StreamsBroadcastChannel",
    "StreamsSubscription",
    "StreamsTopic",
    "StreamsTopicSubscriber",
]


class StreamsTopicSubscriber(TopicSubscriber, CursorSubscriber):
    """Read-only view of a Streams topic."""

    def __init__(self, topic: StreamsTopic) -> None:
        super().__init__(topic)
        self._streams_topic = topic

    def subscribe(
        self, cursor: str | None = None, *, buffer_bytes: int | None = None
    ) -> StreamsSubscription:
        return self._streams_topic.subscribe(cursor, buffer_bytes=buffer_bytes)


class StreamsTopic(ChannelTopic, CursorTopic):
    """A topic of a ``StreamsBroadcastChannel``: ``subscribe()`` takes a cursor."""

    def __init__(self, channel: StreamsBroadcastChannel, name: str) -> None:
        super().__init__(channel, name)
        self._streams = channel

    def subscribe(
        self, cursor: str | None = None, *, buffer_bytes: int | None = None
    ) -> StreamsSubscription:
        return self._streams.open_subscription(self.name, cursor, buffer_bytes=buffer_bytes)

    def as_subscriber(self) -> StreamsTopicSubscriber:
        return StreamsTopicSubscriber(self)


class StreamsBroadcastChannel(RedisClientChannel[redis.Redis]):
    """Broadcast over Redis Streams (5.0+; exact loss detection on 7.0+), RESP2 or RESP3.

    ``retention_seconds``: how long a topic's history outlives its last message.
    ``maxlen``: trim each stream to about that many entries (``MAXLEN ~``, so up to a
    hundred or so more are kept), None for no limit. The other arguments are those of
    ``RedisBroadcastChannel``; the reader's blocking read lasts ``health_check_interval``.
    """

    features = ChannelFeatures(keeps_history=True, crosses_processes=True)

    def __init__(
        self,
        client: redis.Redis,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        subscribe_timeout: float = DEFAULT_SUBSCRIBE_TIMEOUT,
        prefix: str = "",
        health_check_interval: float | None = None,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        maxlen: int | None = None,
    ) -> None:
        super().__init__(
            client,
            buffer_size=buffer_size,
            subscribe_timeout=subscribe_timeout,
            prefix=prefix,
            health_check_interval=health_check_interval,
        )
        self.retention_seconds = positive_number("retention_seconds", retention_seconds)
        self.maxlen = None if maxlen is None else positive_int("maxlen", maxlen)
        self._retention_ms = max(1, round(self.retention_seconds * 1000))
        self._append = client.register_script(APPEND_SCRIPT)
        self._probe = client.register_script(PROBE_SCRIPT)

    def topic(self, topic: str) -> StreamsTopic:
        return StreamsTopic(self, validate_topic_name(topic))

    def create_upstream(self, hub: Hub) -> Upstream:
        return StreamsFeed(
            hub,
            self.reader_connection,
            self.client,
            prefix=self.prefix.encode(),
            health_check_interval=self.health_check_interval,
            retention_seconds=self.retention_seconds,
        )

    def publish_payload(self, topic: str, payload: bytes) -> None:
        try:
            self._append(
                keys=[self.prefix + topic], args=[payload, self._retention_ms, self.maxlen or 0]
            )
        except RedisError as exc:
            raise PublishError(f"Could not publish to topic {topic!r}: {exc}") from exc

    def open_subscription(
        self, topic: str, cursor: str | None = None, *, buffer_bytes: int | None = None
    ) -> StreamsSubscription:
        """Raises TypeError or ValueError for an invalid ``cursor`` or ``buffer_bytes``,
        before any I/O."""
        history = None
        if cursor is not None:
            history = StreamHistory(
                self.client, self._probe, self.prefix + topic, parse_cursor(cursor)
            )
        return StreamsSubscription(
            self.hub,
            topic,
            self.buffer_size,
            self.subscribe_timeout,
            history=history,
            buffer_bytes=buffer_bytes,
        )
