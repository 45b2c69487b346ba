"""A hub's feed from Redis Pub/Sub: one connection and one reader thread, for all topics.

Used by every Pub/Sub backend; they differ only in the commands (``PUBSUB_COMMANDS``
for SUBSCRIBE, ``SHARDED_COMMANDS`` for SSUBSCRIBE).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, NamedTuple

from redis.exceptions import RedisError, ResponseError

from ..channel import Message
from . import _envelope
from ._connection import (
    ConnectionFactory,
    ConnectionLost,
    ConnectionReader,
    Reconnects,
    SubscriberConnection,
)
from ._hub import Hub, Upstream
from ._inbox import Latch

logger = logging.getLogger("broadcast_app")

_PING = "PING"
#: Most replies handled before the messages among them are delivered.
READ_BATCH = 1024


class PubSubCommands(NamedTuple):
    subscribe: str
    unsubscribe: str
    message: bytes
    subscribed: bytes
    unsubscribed: bytes


PUBSUB_COMMANDS = PubSubCommands(
    "SUBSCRIBE", "UNSUBSCRIBE", b"message", b"subscribe", b"unsubscribe"
)
SHARDED_COMMANDS = PubSubCommands(
    "SSUBSCRIBE", "SUNSUBSCRIBE", b"smessage", b"ssubscribe", b"sunsubscribe"
)


class PubSubFeed(ConnectionReader, Upstream):
    """Feeds a hub from one Redis Pub/Sub connection, read by one daemon thread.

    The thread starts with the first topic and lives until ``close()``, or until the
    connection is lost while no topic is listened to (a new topic starts it again,
    so a channel without subscriptions does not retry an unreachable server). Subscribe and
    unsubscribe commands are written by the caller's thread under ``_lock``, in the
    order the hub issues them, and confirmed by the reader. On connection loss the
    reader reconnects with backoff, re-subscribes every topic and marks a gap on their
    subscriptions; a health-check PING every ``health_check_interval`` seconds of
    silence detects half-open connections. An error reply, or the server ending a
    subscription unasked, is handled like a lost connection. A topic Redis refuses to
    subscribe (an ACL, say) fails alone: starting subscriptions raise, live ones close.

    Subclasses may override the hooks ``_refused``, ``_revoked`` and ``_disconnected``.
    """

    def __init__(
        self,
        hub: Hub,
        connect: ConnectionFactory,
        *,
        commands: PubSubCommands = PUBSUB_COMMANDS,
        prefix: bytes = b"",
        health_check_interval: float,
        name: str = "redis",
    ) -> None:
        super().__init__(connect, name)
        self._hub = hub
        self._commands = commands
        self._prefix = prefix
        self._health_check_interval = health_check_interval
        self._latches: dict[str, Latch] = {}
        # Commands written on the current connection and not yet answered, in order, so
        # that an error reply names its command; and the unanswered SUBSCRIBEs per topic.
        self._sent: deque[tuple[str, str]] = deque()
        self._unconfirmed: dict[str, int] = {}

    # -- Upstream, called by the hub under its lock --------------------------------

    def listen(self, topic: str, latch: Latch | None = None) -> Latch:
        """Start receiving ``topic``; ``latch``, if given, is set on confirmation."""
        with self._lock:
            latch = self._latches[topic] = latch or Latch()
            if self._connection is not None:
                self._write(self._commands.subscribe, topic)
            else:
                self._start_reader()
            return latch

    def confirmation(self, topic: str) -> Latch:
        with self._lock:
            return self._latches[topic]

    def unlisten(self, topic: str) -> None:
        with self._lock:
            del self._latches[topic]
            if self._connection is not None:
                self._write(self._commands.unsubscribe, topic)

    def forget(self, topic: str) -> Latch | None:
        """Stop receiving ``topic`` without telling the server, which no longer sends it
        (the connection is gone, or the server ended the subscription). Return its latch."""
        with self._lock:
            self._unconfirmed.pop(topic, None)
            return self._latches.pop(topic, None)

    def close(self) -> None:
        with self._lock:
            self._latches.clear()
        self._stop_reader()

    # -- helpers -------------------------------------------------------------------

    def _channel(self, topic: str) -> bytes:
        return self._prefix + topic.encode()

    def _topic(self, channel: bytes) -> str:
        return channel[len(self._prefix) :].decode("utf-8", "surrogateescape")

    def _write(self, command: str, *topics: str) -> None:
        """Send ``command`` once per topic (once if none) in one write, on the live
        connection if any. One topic per command: a refusal concerns that topic alone,
        and a cluster accepts it whatever the slots. Call with ``_lock`` held."""
        connection = self._connection
        if connection is None:
            return  # Lost: the reader re-subscribes on the next connection.
        sent = [(command, topic) for topic in topics] or [(command, "")]
        arguments = [(name, self._channel(topic)) if topic else (name,) for name, topic in sent]
        try:
            connection.send_packed_command(connection.pack_commands(arguments), check_health=False)
        except (RedisError, OSError):
            # The reader sees the broken socket too, reconnects and re-subscribes.
            self._connection = None
            return
        self._sent.extend(sent)
        if command == self._commands.subscribe:
            for topic in topics:
                self._unconfirmed[topic] = self._unconfirmed.get(topic, 0) + 1

    def _answered(self, command: str, topic: str) -> bool:
        """Account for the reply to the oldest command; False if it is not that reply
        (a push the server sent unasked)."""
        with self._lock:
            if not self._sent or self._sent[0] != (command, topic):
                return False
            self._sent.popleft()
            return True

    def _confirmed(self, topic: str) -> None:
        with self._lock:
            left = self._unconfirmed.get(topic, 0) - 1
            if left > 0:
                self._unconfirmed[topic] = left
                return
            self._unconfirmed.pop(topic, None)
            latch = self._latches.get(topic)
        if latch is not None:
            latch.set()

    def _error_reply(self, error: ResponseError) -> None:
        with self._lock:
            command, topic = self._sent.popleft() if self._sent else ("", "")
            if command == self._commands.subscribe:
                self._unconfirmed.pop(topic, None)
        if command == self._commands.subscribe:
            self._refused(topic, error)
        else:
            logger.warning("Redis answered %s with an error: %s", command or "?", error)

    def _refused(self, topic: str, error: ResponseError) -> None:
        """Redis refused to subscribe ``topic``: starting subscriptions of the topic raise
        ``BroadcastChannelError``, live ones are closed. Called by the reader thread."""
        with self._lock:
            latch = self._latches.get(topic)
        if latch is None:
            return  # Nobody listens any more.
        latch.fail(error)
        closed = self._hub.refuse(topic)
        logger.error(
            "Redis refused the subscription to topic %r (%s); %d subscription(s) closed.",
            topic,
            error,
            closed,
        )

    # -- the reader thread -----------------------------------------------------------

    def _run(self) -> None:
        reconnects = Reconnects()
        outage: BaseException | None = None  # What ended the last good connection.
        while not self._stopping.is_set():
            try:
                connection = self._open()
            except Exception as exc:  # The reader must outlive any error.
                if self._retire():
                    return
                if outage is None:
                    outage = exc
                    logger.warning("Cannot connect to Redis (%s); retrying.", exc)
                self._disconnected(exc)
                self._stopping.wait(reconnects.after_failed_connect(exc))
                continue
            if connection is None:
                break
            if outage is not None:
                self._hub.stats.add(reconnects=1)
                logger.info(
                    "Reconnected to Redis after %d attempt(s); re-subscribed %d topic(s).",
                    reconnects.failures + 1,
                    len(self._latches),
                )
            outage = None
            reconnects.connected()
            try:
                self._read(connection)
            except Exception as exc:  # The reader must outlive any error.
                outage = exc
            lost = self._drop(connection)
            if self._stopping.is_set():
                break
            if not lost and self._retire():
                logger.debug("Lost the idle Redis Pub/Sub connection (%s).", outage)
                return
            logger.warning(
                "Lost the Redis Pub/Sub connection (%s); reconnecting and re-subscribing "
                "%d topic(s). Messages published meanwhile are not delivered.",
                outage,
                len(lost),
            )
            self._hub.mark_gap(lost)
            self._disconnected(outage)
            self._stopping.wait(reconnects.after_lost_connection())

    def _listening(self) -> bool:
        return bool(self._latches)

    def _opened(self, connection: SubscriberConnection) -> None:
        self._sent.clear()
        self._unconfirmed.clear()
        if self._latches:
            self._write(self._commands.subscribe, *self._latches)

    def _drop(self, connection: SubscriberConnection) -> list[str]:
        """Forget a dead connection; return its topics, whose latches are re-armed."""
        with self._lock:
            self._forget_connection(connection)
            for topic, latch in self._latches.items():
                if latch.is_set():
                    self._latches[topic] = Latch()
            topics = list(self._latches)
        connection.disconnect()
        return topics

    def _read(self, connection: SubscriberConnection) -> None:
        interval = self._health_check_interval
        awaiting_pong = False
        while not self._stopping.is_set():
            if self._connection is not connection:
                raise ConnectionLost("a command could not be written")
            if not connection.can_read(timeout=interval):
                if awaiting_pong:
                    raise ConnectionLost(f"no reply to a health check within {interval} s")
                with self._lock:
                    if self._connection is connection:
                        self._write(_PING)
                awaiting_pong = True
                continue
            awaiting_pong = False
            self._receive(connection)

    def _receive(self, connection: SubscriberConnection) -> None:
        """Handle the replies that have arrived (at most ``READ_BATCH``), delivering the
        messages among them together, so each waiting consumer wakes once per batch."""
        messages: list[tuple[str, Message]] = []
        try:
            for _ in range(READ_BATCH):
                try:
                    response = connection.read_response(push_request=True)
                except ResponseError as error:
                    self._deliver(messages)
                    self._error_reply(error)
                else:
                    if (
                        isinstance(response, list)
                        and len(response) == 3
                        and response[0] == self._commands.message
                    ):
                        messages.append((self._topic(response[1]), _envelope.decode(response[2])))
                    else:
                        self._deliver(messages)
                        self._handle(response)
                if not connection.can_read(timeout=0):
                    break
        finally:
            self._deliver(messages)

    def _deliver(self, messages: list[tuple[str, Message]]) -> None:
        if messages:
            self._hub.dispatch_many(messages)
            messages.clear()

    def _handle(self, response: Any) -> None:
        """Handle a reply that is not a message."""
        if not isinstance(response, list) or len(response) < 3:
            self._answered(_PING, "")  # RESP3 "PONG", or RESP2 ["pong", ""].
            return
        kind = response[0]
        if kind == self._commands.subscribed:
            topic = self._topic(response[1])
            self._answered(self._commands.subscribe, topic)
            self._confirmed(topic)
        elif kind == self._commands.unsubscribed:
            topic = self._topic(response[1])
            if not self._answered(self._commands.unsubscribe, topic):
                self._revoked(topic)

    def _revoked(self, topic: str) -> None:
        """The server ended the subscription to ``topic`` unasked (never for plain Pub/Sub;
        a shard channel whose slot moved away). Called by the reader thread, no lock held.

        By default, recover as from a lost connection: reconnect and re-subscribe.
        """
        raise ConnectionLost(f"the server ended the subscription to {topic!r}")

    def _disconnected(self, error: BaseException | None) -> None:
        """The connection was lost or could not be opened, and gaps are marked; the reader
        tries again after a backoff delay. Called by the reader thread, no lock held.

        ``forget()``, ``listen()`` and ``close()`` may be called from here.
        """
