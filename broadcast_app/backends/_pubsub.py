"""A hub's feed from Redis Pub/Sub: one connection and one reader thread, for all topics.

Used by every Pub/Sub backend; they differ only in the commands (``PUBSUB_COMMANDS``
for SUBSCRIBE, ``SHARDED_COMMANDS`` for SSUBSCRIBE).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from redis.exceptions import RedisError

from ._hub import Hub, Upstream
from ._inbox import Latch

logger = logging.getLogger("broadcast_app")

#: Channels per SUBSCRIBE command when re-subscribing after a reconnect.
RESUBSCRIBE_BATCH = 512
#: Reconnect delay bounds, in seconds (exponential, with jitter).
BACKOFF_BASE = 0.05
BACKOFF_CAP = 5.0


class SubscriberConnection(Protocol):
    """The part of ``redis.connection.SubscriberConnection`` the feed uses, typed."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def send_command(self, *args: Any, check_health: bool = True) -> None: ...

    def can_read(self, timeout: float = 0) -> bool: ...

    def read_response(
        self, disable_decoding: bool = False, *, push_request: bool = False
    ) -> Any: ...


ConnectionFactory = Callable[[], SubscriberConnection]


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


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based), with jitter."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt - 1, 16))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


class _ConnectionLost(RedisError):
    pass


def interrupt(connection: SubscriberConnection) -> None:
    """Wake a thread blocked reading ``connection``, leaving the clean-up to that thread."""
    sock = getattr(connection, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class PubSubFeed(Upstream):
    """Feeds a hub from one Redis Pub/Sub connection, read by one daemon thread.

    The thread starts with the first topic and lives until ``close()``. Subscribe and
    unsubscribe commands are written by the caller's thread under ``_lock``, in the
    order the hub issues them, and confirmed by the reader. On connection loss the
    reader reconnects with backoff, re-subscribes every topic and marks a gap on their
    subscriptions; a health-check PING every ``health_check_interval`` seconds of
    silence detects half-open connections.
    """

    def __init__(
        self,
        hub: Hub[bytes],
        connect: ConnectionFactory,
        *,
        commands: PubSubCommands = PUBSUB_COMMANDS,
        prefix: bytes = b"",
        health_check_interval: float = 30.0,
        name: str = "redis",
    ) -> None:
        self._hub = hub
        self._connect = connect
        self._commands = commands
        self._prefix = prefix
        self._health_check_interval = health_check_interval
        self._name = name
        self._lock = threading.Lock()
        self._latches: dict[str, Latch] = {}
        # SUBSCRIBE commands written on the current connection and not yet confirmed.
        self._unconfirmed: dict[str, int] = {}
        self._connection: SubscriberConnection | None = None
        self._connecting: SubscriberConnection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- Upstream, called by the hub under its lock --------------------------------

    def listen(self, topic: str) -> Latch:
        with self._lock:
            latch = self._latches[topic] = Latch()
            if self._connection is not None:
                self._write(self._commands.subscribe, topic)
            elif self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(
                    target=self._run, name=f"broadcast_app-{self._name}-reader", daemon=True
                )
                self._thread.start()
            return latch

    def confirmation(self, topic: str) -> Latch:
        with self._lock:
            return self._latches[topic]

    def unlisten(self, topic: str) -> None:
        with self._lock:
            del self._latches[topic]
            if self._connection is not None:
                self._write(self._commands.unsubscribe, topic)

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            self._latches.clear()
            connections = (self._connection, self._connecting)
            self._connection = None
            thread = self._thread
        for connection in connections:
            if connection is not None:
                interrupt(connection)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    # -- helpers -------------------------------------------------------------------

    def _channel(self, topic: str) -> bytes:
        return self._prefix + topic.encode()

    def _topic(self, channel: bytes) -> str:
        return channel[len(self._prefix) :].decode("utf-8", "surrogateescape")

    def _write(self, command: str, *topics: str) -> None:
        """Send a command on the live connection. Call with ``_lock`` held."""
        connection = self._connection
        assert connection is not None
        try:
            connection.send_command(command, *map(self._channel, topics), check_health=False)
        except (RedisError, OSError):
            # The reader sees the broken socket too, reconnects and re-subscribes.
            self._connection = None
            return
        if command == self._commands.subscribe:
            for topic in topics:
                self._unconfirmed[topic] = self._unconfirmed.get(topic, 0) + 1

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

    # -- the reader thread -----------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        outage: BaseException | None = None
        while not self._stopping.is_set():
            try:
                connection = self._open()
            except (RedisError, OSError) as exc:
                failures += 1
                if outage is None:
                    outage = exc
                    logger.warning("Cannot connect to Redis (%s); retrying.", exc)
                self._stopping.wait(backoff_delay(failures))
                continue
            if connection is None:
                break
            if outage is not None:
                logger.info(
                    "Reconnected to Redis after %d attempt(s); re-subscribed %d topic(s).",
                    failures,
                    len(self._latches),
                )
            failures, outage = 0, None
            try:
                self._read(connection)
            except Exception as exc:  # The reader must outlive any error.
                outage = exc
            lost = self._drop(connection)
            if self._stopping.is_set():
                break
            logger.warning(
                "Lost the Redis Pub/Sub connection (%s); reconnecting and re-subscribing "
                "%d topic(s). Messages published meanwhile are not delivered.",
                outage,
                len(lost),
            )
            self._hub.mark_gap(lost)
            failures = 1
            self._stopping.wait(backoff_delay(failures))

    def _open(self) -> SubscriberConnection | None:
        """Connect and subscribe every topic; None if closing."""
        connection = self._connect()
        with self._lock:
            self._connecting = connection
        try:
            connection.connect()
        finally:
            with self._lock:
                self._connecting = None
        with self._lock:
            if self._stopping.is_set():
                connection.disconnect()
                return None
            self._connection = connection
            self._unconfirmed.clear()
            topics = list(self._latches)
            for start in range(0, len(topics), RESUBSCRIBE_BATCH):
                self._write(self._commands.subscribe, *topics[start : start + RESUBSCRIBE_BATCH])
        return connection

    def _drop(self, connection: SubscriberConnection) -> list[str]:
        """Forget a dead connection; return its topics, whose latches are re-armed."""
        with self._lock:
            if self._connection is connection:
                self._connection = None
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
                raise _ConnectionLost("a command could not be written")
            if not connection.can_read(timeout=interval):
                if awaiting_pong:
                    raise _ConnectionLost(f"no reply to a health check within {interval} s")
                with self._lock:
                    if self._connection is connection:
                        connection.send_command("PING", check_health=False)
                awaiting_pong = True
                continue
            awaiting_pong = False
            self._handle(connection.read_response(push_request=True))

    def _handle(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 3:
            return  # A health-check reply.
        kind = response[0]
        if kind == self._commands.message:
            self._hub.dispatch(self._topic(response[1]), response[2])
        elif kind == self._commands.subscribed:
            self._confirmed(self._topic(response[1]))
        elif kind == self._commands.unsubscribed:
            self._unsubscribed(self._topic(response[1]))

    def _unsubscribed(self, topic: str) -> None:
        """The server ended a subscription; for plain Pub/Sub only ever on request."""
