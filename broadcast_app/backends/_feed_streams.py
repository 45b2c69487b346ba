"""A hub's feed from Redis Streams: one blocking XREAD, on one connection, for all topics."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from ..channel import ORIGIN, Message
from . import _envelope
from ._connection import (
    ConnectionFactory,
    ConnectionLost,
    ConnectionReader,
    SubscriberConnection,
    backoff_delay,
)
from ._hub import Hub, Upstream
from ._inbox import Latch
from ._stream_scripts import PROBE_SCRIPT, Probe, payload_of, text
from ._wakeup import WakeUp

logger = logging.getLogger("broadcast_app")

#: Entries read from each stream per XREAD.
READ_COUNT = 512
#: Streams looked up per probe script call.
PROBE_BATCH = 512
#: Bounds of the pause between two CLIENT UNBLOCK attempts, in seconds: the first may
#: reach Redis before the XREAD it is meant to end.
UNBLOCK_RETRY = (0.001, 0.05)


class _StreamReadState:
    """The reader's state for one listened stream: its topic and key, the latch that
    confirms the topic, and the last ID delivered (or captured)."""

    __slots__ = ("broken", "key", "latch", "position", "seen", "topic")

    def __init__(self, topic: str, key: bytes) -> None:
        self.topic = topic
        self.key = key
        self.latch = Latch()
        # Written by the reader thread only. Position: None until the stream's last ID is
        # captured. Seen: entries the stream had up to position, where Redis tells.
        self.position: bytes | None = None
        self.seen: int | None = None
        self.broken = False


class StreamsFeed(ConnectionReader, Upstream):
    """Feeds a hub from Redis Streams through one connection, read by one daemon thread.

    The thread starts with the first topic and lives until ``close()``. It loops on one
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
        name: str = "streams",
    ) -> None:
        super().__init__(connect, name)
        self._hub = hub
        self._client = client
        self._prefix = prefix
        self._interval = health_check_interval
        self._retention = retention_seconds
        self._topics: dict[str, _StreamReadState] = {}
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
            state = self._topics[topic] = _StreamReadState(topic, self._prefix + topic.encode())
            if self._thread is None and not self._stopping.is_set():
                self._wakeup = WakeUp()
                self._start_reader()
            else:
                self._wake()
            return state.latch

    def confirmation(self, topic: str) -> Latch:
        with self._lock:
            return self._topics[topic].latch

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
        failures = 0
        error: BaseException | None = None
        resuming = False
        try:
            while not self._stopping.is_set():
                connection = None
                try:
                    connection = self._open()
                    if connection is None:
                        break
                    if resuming:
                        self._hub.stats.add(reconnects=1)
                        self._hub.mark_gap(self._resume(connection))
                        logger.info(
                            "Reconnected to Redis after %d attempt(s); resumed %d stream(s).",
                            failures,
                            len(self._topics),
                        )
                    failures, error, resuming = 0, None, True
                    self._run_id = self._reached_run_id
                    self._serve(connection)
                except Exception as exc:  # The reader must outlive any error.
                    if error is None and not self._stopping.is_set():
                        logger.warning(
                            "The Redis Streams reader cannot read (%s); reconnecting with "
                            "backoff. Streams resume after the last entry delivered.",
                            exc,
                        )
                    error = exc
                if connection is not None:
                    self._drop(connection)
                failures += 1
                self._stopping.wait(backoff_delay(failures))
        finally:
            with self._lock:
                if self._wakeup is not None:
                    self._wakeup.close()
                self._wakeup = None

    def _open(self) -> SubscriberConnection | None:
        """Connect, and learn the connection's client ID; None if closing."""
        connection = super()._open()
        if connection is None:
            return None
        connection.send_command("CLIENT", "ID", check_health=False)
        connection.send_command("INFO", "server", check_health=False)
        self._reader_id = int(self._reply(connection))
        info = text(self._reply(connection))
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

    def _break(self, state: _StreamReadState, kind: str) -> None:
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
            connection.send_command(
                "XREAD", "COUNT", READ_COUNT, "BLOCK", block_ms, "STREAMS", *request, *ids,
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
        self, connection: SubscriberConnection, request: dict[bytes, _StreamReadState]
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

    def _deliver(self, reply: Any, request: dict[bytes, _StreamReadState]) -> None:
        messages: list[tuple[str, Message]] = []
        for key, entries in reply.items() if isinstance(reply, dict) else reply:
            state = request.get(key)
            if state is None or not entries:
                continue
            with self._lock:
                if self._topics.get(state.topic) is not state:
                    continue  # Unlistened meanwhile; a new listener starts afresh.
            topic = state.topic
            messages.extend(
                (topic, _envelope.decode(payload_of(fields), entry_id.decode()))
                for entry_id, fields in entries
            )
            state.position = entries[-1][0]
            if state.seen is not None:
                state.seen += len(entries)
        self._hub.dispatch_many(messages)

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
