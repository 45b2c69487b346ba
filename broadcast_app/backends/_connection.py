"""The dedicated connection a reader thread owns, and how it reconnects.

Shared by every Redis feed (Pub/Sub, sharded, Streams).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry


class ConnectionLost(RedisError):
    """A feed's connection is unusable (no reply, closed, or the server ended it)."""


#: Reconnect delays, in seconds (see ``Reconnects``): exponential from BACKOFF_BASE, with
#: jitter, up to PROBE_CAP while no server answers (so a reader is back within about
#: that long once the server is), and up to BACKOFF_CAP while a server answers with an
#: error or drops connections as soon as they are made.
BACKOFF_BASE = 0.05
PROBE_CAP = 0.2
BACKOFF_CAP = 5.0
#: A connection lost sooner than this after it was made counts as dying young; this
#: many young deaths in a row make a flapping server. Short, so that a server restarted
#: several times in a row (each connection having served) is no flapping server.
YOUNG_CONNECTION = 1.0
FLAPPING = 3
#: Options of a subscriber connection that replace the client's: the feed reads bytes,
#: runs its own health checks and its own reconnect loop with backoff.
_SUBSCRIBER_CONNECTION_OPTIONS: dict[str, Any] = {
    "decode_responses": False,
    "health_check_interval": 0,
    "retry": Retry(ExponentialBackoff(), 0),
}
#: Socket timeouts of a subscriber connection when the client sets none, in seconds. They
#: bound a handshake with a hung server; idle waits use the health-check period instead.
_SUBSCRIBER_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0}


class SubscriberConnection(Protocol):
    """The part of ``redis.connection.AbstractConnection`` the feed uses, typed."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def send_command(self, *args: Any, check_health: bool = True) -> None: ...

    def pack_commands(self, commands: list[tuple[Any, ...]]) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def can_read(self, timeout: float = 0) -> bool: ...

    def read_response(
        self, disable_decoding: bool = False, *, push_request: bool = False
    ) -> Any: ...


ConnectionFactory = Callable[[], SubscriberConnection]


def subscriber_connection(client: redis.Redis) -> SubscriberConnection:
    """Return a new, unconnected connection to ``client``'s server for a feed to own."""
    pool = client.connection_pool
    options = dict(pool.connection_kwargs)
    for name, value in _SUBSCRIBER_TIMEOUTS.items():
        if options.get(name) is None:
            options[name] = value
    options.update(_SUBSCRIBER_CONNECTION_OPTIONS)
    return cast(SubscriberConnection, pool.connection_class(**options))


def backoff_delay(attempt: int, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based), with jitter.

    The jitter (half the delay) keeps the processes that lost the same server from
    reconnecting in lockstep.
    """
    delay = min(cap, BACKOFF_BASE * 2.0 ** min(attempt - 1, 16))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


def unreachable(error: BaseException | None) -> bool:
    """Whether a connect failed with ``error`` because no server answered (refused,
    unroutable or timed out at the socket), not because a server answered with an error."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Reconnects:
    """When a reader thread should try again. Used by that thread only.

    Connects that reach no server are retried within PROBE_CAP: a refused TCP
    connection costs the server nothing, and the reader is back soon after the server.
    A server that answers but refuses (a wrong password, too many clients), and
    connections that die young several times in a row, are retried with a backoff
    growing to BACKOFF_CAP instead, so that such a server is not hammered.
    """

    def __init__(self) -> None:
        #: Connects that failed since the last connection was made.
        self.failures = 0
        self._young_deaths = 0
        self._connected_at = 0.0

    def connected(self) -> None:
        self.failures = 0
        self._connected_at = time.monotonic()

    def after_failed_connect(self, error: BaseException | None) -> float:
        """Seconds to wait after a connect failed with ``error``."""
        self.failures += 1
        probing = unreachable(error) and self._young_deaths < FLAPPING
        return backoff_delay(
            self._young_deaths + self.failures, PROBE_CAP if probing else BACKOFF_CAP
        )

    def after_lost_connection(self) -> float:
        """Seconds to wait after a live connection was lost."""
        young = time.monotonic() - self._connected_at < YOUNG_CONNECTION
        self._young_deaths = self._young_deaths + 1 if young else 0
        return backoff_delay(self._young_deaths + 1)


def interrupt(connection: SubscriberConnection) -> None:
    """Wake a thread blocked reading ``connection``, leaving the clean-up to that thread."""
    sock = getattr(connection, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class ConnectionReader:
    """A feed's dedicated connection and the daemon thread that reads it.

    The thread runs ``_run()``; it is started by ``_start_reader()`` (call with ``_lock``
    held) and stopped by ``_stop_reader()``, which wakes it from a blocked read and
    joins it. ``_open()`` connects on the reader thread, so that a connection being made
    while the feed closes is shut too. Subclasses guard their own state with ``_lock``.
    """

    def __init__(self, connect: ConnectionFactory, name: str) -> None:
        self._connect = connect
        self._name = name
        self._lock = threading.Lock()
        self._connection: SubscriberConnection | None = None
        self._connecting: SubscriberConnection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def _run(self) -> None:
        raise NotImplementedError

    def _listening(self) -> bool:
        """Whether any topic is listened to; call with ``_lock`` held."""
        raise NotImplementedError

    def _retire(self) -> bool:
        """Called by the reader thread, without a connection: if no topic is listened
        to, let the next ``_start_reader()`` start a new thread, and return True: the
        thread must end without touching the feed's state again."""
        with self._lock:
            if self._listening() or self._stopping.is_set():
                return False
            self._retired()
            self._thread = None
            return True

    def _retired(self) -> None:
        """Hook: the reader thread is about to end by ``_retire()``; ``_lock`` is held."""

    def _start_reader(self) -> bool:
        """Start the reader thread unless it runs or the feed is closing; True if started."""
        if self._thread is not None or self._stopping.is_set():
            return False
        self._thread = threading.Thread(
            target=self._run, name=f"broadcast_app-{self._name}-reader", daemon=True
        )
        self._thread.start()
        return True

    def _stop_reader(self) -> None:
        """Make the reader thread end, and wait (up to 5 s) until it has."""
        self._stopping.set()
        with self._lock:
            connections = (self._connection, self._connecting)
            thread = self._thread
        for connection in connections:
            if connection is not None:
                interrupt(connection)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def abandon(self) -> None:
        """Make the reader thread end and close its connection, without waiting for it
        or taking a lock (see ``Upstream.abandon``)."""
        self._stopping.set()
        # Read without the lock: a connection made meanwhile sees _stopping and is shut
        # by the reader itself.
        for connection in (self._connection, self._connecting):
            if connection is not None:
                interrupt(connection)

    def _open(self) -> SubscriberConnection | None:
        """Connect; then, with ``_lock`` held, make it the live connection and call
        ``_opened()``. None if the feed is closing."""
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
            self._opened(connection)
        return connection

    def _opened(self, connection: SubscriberConnection) -> None:
        """Hook: the connection is live; called with ``_lock`` held."""

    def _forget_connection(self, connection: SubscriberConnection) -> None:
        """Stop using ``connection``; call with ``_lock`` held, then disconnect it."""
        if self._connection is connection:
            self._connection = None
