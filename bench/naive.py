"""The baseline the engine is measured against: one PubSub connection and one thread per
subscription.

This is the straightforward design: each subscription opens its own redis-py ``PubSub``
(its own connection) and starts its own thread, which polls ``get_message()`` with a
timeout so that it can notice a stop request, and hands each payload to a handler (by
default a queue read by ``receive()``). Closing sets the stop flag, waits for the thread
to finish its current poll (up to ``poll_timeout`` seconds), then unsubscribes and closes
the connection.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import redis

#: Seconds a subscription thread waits for a message before it checks for a stop request.
POLL_TIMEOUT = 1.0


class NaiveSubscriptionClosed(Exception):
    """``receive()`` on a closed naive subscription."""


_CLOSED = object()


class NaiveSubscription:
    """One topic, one ``PubSub`` connection, one thread.

    ``handler`` is called in the subscription's thread with each payload; without one,
    payloads are queued (unbounded) for ``receive()``. The subscription is confirmed by
    Redis only some time after the constructor returns: callers that must not miss a
    message wait for ``PUBSUB NUMSUB`` first.
    """

    def __init__(
        self,
        client: redis.Redis,
        topic: str,
        *,
        handler: Callable[[bytes], object] | None = None,
        poll_timeout: float = POLL_TIMEOUT,
    ) -> None:
        self.topic = topic
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(topic)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._handler = handler if handler is not None else self._queue.put
        self._poll_timeout = poll_timeout
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"naive-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                message = self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self._poll_timeout
                )
                if message is not None and message["type"] == "message":
                    self._handler(message["data"])
        finally:
            self._queue.put(_CLOSED)

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the next payload, or None after ``timeout`` seconds.

        Raises:
            NaiveSubscriptionClosed: the subscription's thread has ended.
        """
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._queue.put(_CLOSED)
            raise NaiveSubscriptionClosed(self.topic)
        assert isinstance(item, bytes)
        return item

    def stop(self) -> None:
        """Ask the thread to end after its current poll; returns at once."""
        self._stopping.set()

    def close(self) -> None:
        """Stop the thread, wait for it, unsubscribe and close the connection."""
        self._stopping.set()
        self._thread.join()
        self._pubsub.unsubscribe()  # type: ignore[no-untyped-call]
        self._pubsub.close()


def close_all(subscriptions: list[NaiveSubscription]) -> None:
    """Close many subscriptions in about one poll period instead of one period each."""
    for subscription in subscriptions:
        subscription.stop()
    for subscription in subscriptions:
        subscription.close()
