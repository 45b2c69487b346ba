"""A publisher thread at a steady rate that remembers which messages Redis acknowledged.

Message ``s`` carries ``t=<time>;s=<s>;``. ``acked_at[s]`` is when PUBLISH returned
(``time.time()``), or None if it failed. The Pub/Sub publisher is a raw redis-py
client without retries, so a publish never spans a Redis restart: a message is either
acknowledged by the server that was up when it was sent, or failed. (The Streams
backend publishes through the library, whose short retry policy may carry one
publish across a restart.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from localservers import RedisServer

from .measure import payload
from .paths import TOPIC

#: Seconds a PUBLISH may take before it counts as failed.
PUBLISH_TIMEOUT = 0.5


class Publisher:
    """Publish to ``TOPIC`` at ``rate`` messages/s from a thread until ``stop()``."""

    def __init__(self, server: RedisServer, rate: float, backend: str = "pubsub") -> None:
        self.rate = rate
        self.acked_at: list[float | None] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._close: Callable[[], None]
        self._publish: Callable[[bytes], object]
        if backend == "pubsub":
            client = redis.Redis(
                host="127.0.0.1",
                port=server.port,
                socket_timeout=PUBLISH_TIMEOUT,
                socket_connect_timeout=PUBLISH_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            self._publish = lambda data: client.publish(TOPIC, data)
            self._close = client.close
        else:
            from broadcast_app.backends.streams import (  # noqa: PLC0415
                StreamsBroadcastChannel,
            )

            channel = StreamsBroadcastChannel.from_url(server.url)
            self._publish = channel.topic(TOPIC).publish
            self._close = channel.close
        self._thread = threading.Thread(target=self._run, name="soak-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing and close the client; idempotent."""
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(10)
        self._close()

    @property
    def started(self) -> int:
        """The sequence number the next publish will carry."""
        with self._lock:
            return len(self.acked_at)

    def _run(self) -> None:
        began = time.monotonic()
        seq = 0
        while not self._stopping.is_set():
            delay = began + seq / self.rate - time.monotonic()
            if delay > 0 and self._stopping.wait(delay):
                break
            with self._lock:
                self.acked_at.append(None)
            try:
                self._publish(payload(seq, 0))
            except Exception:  # Redis is down: the message was not published.
                pass
            else:
                self.acked_at[seq] = time.time()
            seq += 1
