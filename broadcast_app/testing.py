"""Test helpers for code that publishes: ``capture_messages`` and pytest fixtures.

``capture_messages`` records what this process publishes to a topic inside a
``with`` block, so a test can assert on what a view or an eagerly run Celery task
sent, whatever the backend, without a subscriber or a sleep::

    from broadcast_app.testing import capture_messages

    def test_progress_is_reported():
        with capture_messages("job:42") as messages:
            run_job.apply(args=[42])          # CELERY_TASK_ALWAYS_EAGER, or call it
        assert messages[-1] == b'{"percent":100}'
        assert messages.events[-1] == "progress"

The pytest plugin (registered as ``broadcast_app``) adds the ``broadcast_channel``
fixture: an in-memory channel of its own as ``"default"`` for one test.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .channel import Message
from .conf import DEFAULT_CHANNEL_ALIAS, get_channel


class CapturedMessages(list[bytes]):
    """The payloads published to a topic, in publish order; ``messages`` has them whole
    (with their event names), ``events`` the event name of each (None: plain)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    @property
    def events(self) -> list[str | None]:
        """The event name of each captured message, in order; None for a plain publish."""
        return [message.event for message in self.messages]


@contextlib.contextmanager
def capture_messages(
    topic: str, *, channel: str = DEFAULT_CHANNEL_ALIAS
) -> Iterator[CapturedMessages]:
    """Record the payloads this process publishes to ``topic`` of the channel ``channel``
    while the block runs, from any thread.

    The list is complete when the block exits (a publish has been recorded by the time
    it returns), and nothing published afterwards is added. Publishes that failed are
    not recorded. Publishes of other processes (a Celery worker) are not seen: run the
    task eagerly in the test.

    Raises:
        TypeError, ValueError: ``topic`` is not a usable topic name.
        InvalidChannelBackendError: ``channel`` is not configured.
    """
    broadcast_channel = get_channel(channel)
    name = broadcast_channel.topic(topic).name
    captured = CapturedMessages()
    lock = threading.Lock()
    recording = True

    def record(published_topic: str, message: Message) -> None:
        if published_topic == name:
            with lock:
                if recording:
                    captured.append(message.payload)
                    captured.messages.append(message)

    remove = broadcast_channel.add_publish_listener(record)
    try:
        yield captured
    finally:
        remove()
        with lock:
            recording = False
