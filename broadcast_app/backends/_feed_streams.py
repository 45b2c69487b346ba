"""A hub's feed from Redis Streams: one blocking XREAD, on one connection, for all topics."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from ..channel import ORIGIN
from ..exceptions import BroadcastChannelError
from ._connection import (
    ConnectionFactory,
    ConnectionLost,
    ConnectionReader,
    Reconnects,
    SubscriberConnection,
)
from ._hub import Hub, Upstream
from ._inbox import Latch
from ._stream_reads import ReadPaging, StreamReadState, take_reply
from ._stream_scripts import PROBE_SCRIPT, Probe, text
from ._wakeup import WakeUp

logger = logging.getLogger("broadcast_app")

#: Streams looked up per probe script call.
PROBE_BATCH = 512
#: Bounds of the pause between two CLIENT UNBLOCK attempts, in seconds: the first may
#: reach Redis before the XREAD it is meant to end.
UNBLOCK_RETRY = (0.001, 0.05)


class StreamsFeed(ConnectionReader, Upstream):
    """Feeds a hub from Redis Streams through one connection, read by one daemon thread.

    The thread starts with the first topic and lives until ``close()``, or until it
    loses its connection while no topic is listened to. It loops on one
    ``XREAD BLOCK`` over every listened stream, each from the last ID it delivered. A
    topic is confirmed once the stream's last ID is captured, so whatever is published
    after confirmation is delivered. ``listen``/``unlisten`` wake the thread through a
    socket pair; it ends its blocked read with ``CLIENT UNBLOCK`` on the client's pool,
    so topic changes never wait for the block to time out.

    The block lasts ``health_check_interval`` seconds; no reply within twice that is a
    lost connection. The reader then reconnects with backoff and resumes every stream
    from its last delivered ID, so nothing still retained is missed. It marks a gap
    only where entries may be gone: trimmed or expired past that ID, or lost with the
    server (a different ``run_id``).
    """

    def __init__(
        self,
        hub: Hub,
        connect: ConnectionFactory,
        client: redis.Redis,
        *,
        prefix: bytes,
        health_check_interval: float,
        retention_seconds: float,
        max_payload_bytes: int,
        name: str = "streams",
    ) -> None:
        super().__init__(connect, name)
        self._hub = hub
        self._client = client
        self._prefix = prefix
        self._interval = health_check_interval
        self._retention = retention_seconds
        self._topics: dict[str, StreamReadState] = {}
        self._paging = ReadPaging(max_payload_bytes)
        # Listeners wake the reader; it exists while the reader thread runs.
        self._wakeup: WakeUp | None = None
        self._reader_id = 0
        # The server process the positions refer to, and the one the reader reached last.
        self._run_id: str | None = None
        self._reached_run_id = ""
        self._last_reply_at = time.monotonic()
        self._unblock_refused = False

    # -- Upstream, called by the hub under its lock --------------------------------

    def listen(self, topic: str) -> Latch:
        with self._lock:
            state = self._topics[topic] = StreamReadState(topic, self._prefix + topic.encode())
            if self._thread is None and not self._stopping.is_set():
                self._wakeup = WakeUp()
                self._start_reader()
            else:
                self._wake()
            return state.latch

    def confirmation(self, topic: str) -> Latch:
        """The topic's latch until its start position is captured; after that, a set
        latch whose value is the last position dispatched: a joining subscription
        starts there."""
        with self._lock:
            state = self._topics[topic]
            if state.position is None or not state.latch.is_set() or state.latch.error:
                return state.latch
            latch = Latch()
            latch.set(state.position.decode())
            return latch

    def unlisten(self, topic: str) -> None:
        with self._lock:
            del self._topics[topic]
            self._wake()

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            self._topics.clear()
            self._wake()
        self._stop_reader()

    # -- wake-ups ------------------------------------------------------------------

    def _wake(self) -> None:
        """Make the reader look at the topics again. Call with ``_lock`` held."""
        if self._wakeup is not None:
            self._wakeup.wake()

    def _unblock(self) -> bool:
        """End the reader's blocked XREAD; False if it was not (or not yet) blocked."""
        if self._unblock_refused:
            return True  # The read ends with its block timeout instead.
        try:
            return bool(self._client.client_unblock(self._reader_id))
        except ResponseError as exc:
            self._unblock_refused = True
            logger.warning(
                "CLIENT UNBLOCK failed (%s): new topics wait up to %s s for the reader.",
                exc,
                self._interval,
            )
        except RedisError as exc:
            logger.debug("CLIENT UNBLOCK failed (%s); the reader's read will fail too.", exc)
        return True

    # -- the reader thread -----------------------------------------------------------

    def _run(self) -> None:
        reconnects = Reconnects()
        error: BaseException | None = None
        resuming = False
        try:
            while not self._stopping.is_set():
                connection = None
                connected = False
                try:
                    connection = self._open()
                    if connection is None:
                        break
                    connected, attempts = True, reconnects.failures + 1
                    reconnects.connected()
                    self._paging.active = None  # A backlog may wait in every stream.
                    if resuming:
                        self._hub.stats.add(reconnects=1)
                        self._hub.mark_gap(self._resume(connection))
                        logger.info(
                            "Reconnected to Redis after %d attempt(s); resumed %d stream(s).",
                            attempts,
                            len(self._topics),
                        )
                    error, resuming = None, True
                    self._run_id = self._reached_run_id
                    self._serve(connection)
                except Exception as exc:  # The reader must outlive any error.
                    failure: BaseException | None = exc
                else:
                    failure = None
                if connection is not None:
                    self._drop(connection)
                if self._retire():
                    logger.debug("The idle Redis Streams reader stops (%s).", failure)
                    return
                if error is None and failure is not None and not self._stopping.is_set():
                    logger.warning(
                        "The Redis Streams reader cannot read (%s); reconnecting with "
                        "backoff. Streams resume after the last entry delivered.",
                        failure,
                    )
                error = failure or error
                if connected:
                    self._stopping.wait(reconnects.after_lost_connection())
                else:
                    self._stopping.wait(reconnects.after_failed_connect(failure))
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._retired()

    def _listening(self) -> bool:
        return bool(self._topics)

    def _retired(self) -> None:
        if self._wakeup is not None:
            self._wakeup.close()
        self._wakeup = None

    def _open(self) -> SubscriberConnection | None:
        """Connect, and learn the connection's client ID; None if closing."""
        connection = super()._open()
        if connection is None:
            return None
        try:
            connection.send_command("CLIENT", "ID", check_health=False)
            connection.send_command("INFO", "server", check_health=False)
            self._reader_id = int(self._reply(connection))
            info = text(self._reply(connection))
        except BaseException:
            self._drop(connection)
            raise
        self._reached_run_id = next(
            (line[7:].strip() for line in info.splitlines() if line.startswith("run_id:")), ""
        )
        return connection

    def _drop(self, connection: SubscriberConnection) -> None:
        with self._lock:
            self._forget_connection(connection)
        connection.disconnect()

    def _reply(self, connection: SubscriberConnection) -> Any:
        """Read one reply, allowing ``health_check_interval`` seconds for it."""
        if not connection.can_read(timeout=self._interval):
            raise ConnectionLost(f"no reply from Redis within {self._interval} s")
        return connection.read_response(disable_decoding=True)

    def _probe(self, connection: SubscriberConnection, keys: list[bytes]) -> list[Probe]:
        probes: list[Probe] = []
        for start in range(0, len(keys), PROBE_BATCH):
            batch = keys[start : start + PROBE_BATCH]
            connection.send_command("EVAL", PROBE_SCRIPT, len(batch), *batch, check_health=False)
            probes += Probe.parse(self._reply(connection))
        return probes

    def _resume(self, connection: SubscriberConnection) -> list[str]:
        """Return the topics that may have lost entries while the reader was away."""
        with self._lock:
            states = [state for state in self._topics.values() if state.position is not None]
        if self._reached_run_id != self._run_id:
            # Another server process: what it had not persisted is gone.
            return [state.topic for state in states]
        expired = time.monotonic() - self._last_reply_at >= self._retention
        probes = self._probe(connection, [state.key for state in states])
        return [
            state.topic
            for state, probe in zip(states, probes, strict=True)
            if probe.may_have_lost(text(state.position or b""), if_missing=expired, seen=state.seen)
        ]

    def _capture(self, connection: SubscriberConnection) -> None:
        """Note the last ID of newly listened streams, and confirm their topics."""
        with self._lock:
            pending = [s for s in self._topics.values() if s.position is None and not s.broken]
        if not pending:
            return
        probes = self._probe(connection, [state.key for state in pending])
        for state, probe in zip(pending, probes, strict=True):
            if probe.kind in ("stream", "none"):
                state.position = (probe.last or ORIGIN).encode()
                state.seen = (
                    int(probe.added) if probe.added else 0 if probe.kind == "none" else None
                )
                state.latch.set(state.position.decode())
            else:
                self._break(state, probe.kind)
                # Starting subscriptions fail at once, naming the type, instead of
                # waiting out subscribe_timeout.
                state.latch.fail(
                    BroadcastChannelError(
                        f"The Redis key {text(state.key)!r} holds a {probe.kind}, not a stream."
                    )
                )
                self._hub.refuse(state.topic)

    def _break(self, state: StreamReadState, kind: str) -> None:
        state.broken = True
        logger.error(
            "Topic %r cannot be received: the Redis key %r holds a %s, not a stream.",
            state.topic,
            state.key,
            kind,
        )

    def _serve(self, connection: SubscriberConnection) -> None:
        block_ms = max(1, int(self._interval * 1000))
        assert self._wakeup is not None
        while not self._stopping.is_set():
            self._wakeup.clear()
            self._capture(connection)
            with self._lock:
                request = {
                    state.key: state
                    for state in self._topics.values()
                    if state.position is not None and not state.broken
                }
            if not request:
                self._idle(connection)
                continue
            ids = [state.position for state in request.values()]
            count = self._paging.count(len(request))
            connection.send_command(
                "XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", *request, *ids,
                check_health=False,
            )  # fmt: skip
            try:
                reply = self._await_reply(connection)
            except ResponseError:
                self._find_broken(connection, request)
                continue
            self._last_reply_at = time.monotonic()
            if reply:
                self._deliver(reply, request)

    def _await_reply(self, connection: SubscriberConnection) -> Any:
        """Wait for the XREAD reply, ending the block early when woken."""
        assert self._wakeup is not None
        sock = getattr(connection, "_sock", None)
        if sock is None:
            raise ConnectionLost("the connection is closed")
        deadline = time.monotonic() + 2 * self._interval
        unblocking, pause = False, UNBLOCK_RETRY[0]
        while True:
            if connection.can_read(timeout=0):
                return connection.read_response(disable_decoding=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionLost(f"no reply to XREAD within {2 * self._interval} s")
            wait = min(remaining, pause) if unblocking else remaining
            readable, woken = self._wakeup.wait(sock, wait)
            if self._stopping.is_set():
                raise ConnectionLost("the feed is closing")
            if readable:
                continue
            if woken:
                self._wakeup.clear()
                unblocking = True
            if unblocking:
                if self._unblock():
                    unblocking = False
                else:
                    pause = min(pause * 2, UNBLOCK_RETRY[1])

    def _find_broken(
        self, connection: SubscriberConnection, request: dict[bytes, StreamReadState]
    ) -> None:
        """After XREAD failed: stop reading keys that are no longer streams."""
        states = list(request.values())
        probes = self._probe(connection, [state.key for state in states])
        broken = [
            (s, p) for s, p in zip(states, probes, strict=True) if p.kind not in ("stream", "none")
        ]
        if not broken:
            raise ConnectionLost("XREAD failed on streams that all look readable")
        for state, probe in broken:
            self._break(state, probe.kind)

    def _deliver(self, reply: Any, request: dict[bytes, StreamReadState]) -> None:
        with self._lock:
            # A topic unlistened meanwhile is not delivered; a new listener starts afresh.
            listened = {
                key for key, state in request.items() if self._topics.get(state.topic) is state
            }
        batch = take_reply(reply, request, listened, self._paging)
        self._hub.dispatch_many(batch.messages)
        # Positions move only once their messages are dispatched: a subscription that
        # joins meanwhile starts at the old position, so it receives or can replay
        # every message after its start cursor (see ``confirmation``).
        with self._lock:
            for state, position, count in batch.advanced:
                state.position = position
                if state.seen is not None:
                    state.seen += count

    def _idle(self, connection: SubscriberConnection) -> None:
        """With nothing to read: wait for a topic, checking the connection's health."""
        assert self._wakeup is not None
        sock = getattr(connection, "_sock", None)
        if sock is None:
            raise ConnectionLost("the connection is closed")
        readable, woken = self._wakeup.wait(sock, self._interval)
        if woken or self._stopping.is_set():
            return
        if readable:
            connection.read_response()  # Only an error or a closed socket is expected.
            return
        connection.send_command("PING", check_health=False)
        self._reply(connection)
        self._last_reply_at = time.monotonic()
