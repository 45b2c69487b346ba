"""What every backend shares: argument checks, topics and their views, the hub per process."""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

from ..channel import (
    BroadcastChannel,
    ChannelFeatures,
    Producer,
    PublishListener,
    Subscriber,
    Topic,
)
from . import _envelope
from ._hub import Hub, Upstream
from ._options import channel_options, unknown_options_error
from ._stats import ChannelStats
from .subscription import ChannelSubscription

#: Longest topic name accepted, in characters.
MAX_TOPIC_LENGTH = 1024
#: Messages a subscription keeps for its consumer before it drops the oldest.
DEFAULT_BUFFER_SIZE = 1024
#: Seconds a subscription waits for its topic to be confirmed before it raises.
DEFAULT_SUBSCRIBE_TIMEOUT = 10.0
# C0, DEL and C1 act on terminals and split log lines; U+FFFD is what a decoder leaves for
# bytes it could not read, so names that differed in those bytes would meet in one topic.
_UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ufffd]")


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a usable topic name.

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: ``name`` is empty, longer than MAX_TOPIC_LENGTH, has a control
            character (C0, DEL, C1) or U+FFFD, or is not encodable as UTF-8.
    """
    if not isinstance(name, str):
        raise TypeError(f"A topic name must be a str, not {type(name).__name__}.")
    if not name:
        raise ValueError("A topic name must not be empty.")
    if len(name) > MAX_TOPIC_LENGTH:
        raise ValueError(f"A topic name must be at most {MAX_TOPIC_LENGTH} characters long.")
    unsafe = _UNSAFE_CHARACTERS.search(name)
    if unsafe is not None:
        # !a quotes the name with every unsafe character escaped.
        raise ValueError(
            "A topic name must not contain control characters or U+FFFD: "
            f"{name!a} has U+{ord(unsafe.group()):04X} at index {unsafe.start()}."
        )
    try:
        name.encode()
    except UnicodeEncodeError:
        raise ValueError(f"A topic name must be encodable as UTF-8: {name!r}.") from None
    return name


def as_payload(payload: object) -> bytes:
    """Return ``payload`` as ``bytes``; TypeError for anything not bytes-like."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    raise TypeError(
        f"A payload must be bytes, bytearray or memoryview, not {type(payload).__name__}."
    )


def wire_form(payload: object, event: object = None) -> bytes:
    """Return what a publish sends: ``payload``, or the event ``event`` carrying it.

    Raises:
        TypeError, ValueError: the payload or the event name is unusable.
    """
    payload = as_payload(payload)
    return _envelope.encode(
        payload, None if event is None else _envelope.validate_event_name(event)
    )


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` above zero; ValueError naming ``name`` if not."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}.")
    return value


def positive_number(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number above zero (seconds);
    ValueError naming ``name`` if not: nan and infinity are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}.")
    return float(value)


class TopicProducer(Producer):
    """Write-only view of a topic."""

    def __init__(self, topic: ChannelTopic) -> None:
        self._topic = topic

    def publish(self, payload: bytes, *, event: str | None = None) -> None:
        self._topic.publish(payload, event=event)

    async def apublish(self, payload: bytes, *, event: str | None = None) -> None:
        await self._topic.apublish(payload, event=event)


class TopicSubscriber(Subscriber):
    """Read-only view of a topic."""

    def __init__(self, topic: ChannelTopic) -> None:
        self._topic = topic

    def subscribe(self, *, buffer_bytes: int | None = None) -> ChannelSubscription:
        return self._topic.subscribe(buffer_bytes=buffer_bytes)


class ChannelTopic(Topic):
    """A topic of a ``BaseBroadcastChannel``. Cheap to create; holds no resources."""

    def __init__(self, channel: BaseBroadcastChannel, name: str) -> None:
        self._channel = channel
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def publish(self, payload: bytes, *, event: str | None = None) -> None:
        wire = wire_form(payload, event)
        self._channel.publish_payload(self.name, wire)
        self._channel.published(self.name, wire)

    async def apublish(self, payload: bytes, *, event: str | None = None) -> None:
        wire = wire_form(payload, event)
        await self._channel.apublish_payload(self.name, wire)
        self._channel.published(self.name, wire)

    def subscribe(self, *, buffer_bytes: int | None = None) -> ChannelSubscription:
        return self._channel.open_subscription(self.name, buffer_bytes=buffer_bytes)

    def as_producer(self) -> TopicProducer:
        return TopicProducer(self)

    def as_subscriber(self) -> TopicSubscriber:
        return TopicSubscriber(self)


class HubOwner:
    """Holds the hub of the current process, created on first use and again after a fork."""

    def __init__(self) -> None:
        self._hub_lock = threading.Lock()
        self._hub: Hub | None = None
        self._stats = ChannelStats()

    @abstractmethod
    def create_upstream(self, hub: Hub) -> Upstream:
        """Return the upstream feeding ``hub``; called once per process, must not do I/O."""

    @property
    def hub(self) -> Hub:
        hub = self._hub
        if hub is not None and hub.pid == os.getpid():
            return hub
        with self._hub_lock:
            if self._hub is None or self._hub.pid != os.getpid():
                # In a forked child the parent's hub is left alone: its sockets are shared.
                self._hub = Hub(self.create_upstream, self._stats)
            return self._hub

    def close(self) -> None:
        """Close every subscription and release connections and threads. Idempotent."""
        with self._hub_lock:
            hub, self._hub = self._hub, None
        if hub is not None:
            hub.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()


class BaseBroadcastChannel(HubOwner, BroadcastChannel, ABC):
    """A channel whose subscriptions are served by one hub per process.

    Subclasses provide ``create_upstream()`` and ``publish_payload()``, and declare
    ``features``; a backend with history also overrides ``topic()`` and
    ``open_subscription()``.
    """

    features: ClassVar[ChannelFeatures] = ChannelFeatures()

    def __init__(
        self,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        subscribe_timeout: float = DEFAULT_SUBSCRIBE_TIMEOUT,
    ) -> None:
        super().__init__()
        self.buffer_size = positive_int("buffer_size", buffer_size)
        self.subscribe_timeout = positive_number("subscribe_timeout", subscribe_timeout)
        self._listeners_lock = threading.Lock()
        self._publish_listeners: tuple[PublishListener, ...] = ()

    def add_publish_listener(self, listener: PublishListener) -> Callable[[], None]:
        with self._listeners_lock:
            self._publish_listeners = (*self._publish_listeners, listener)

        def remove() -> None:
            with self._listeners_lock:
                listeners = list(self._publish_listeners)
                if listener in listeners:
                    listeners.remove(listener)
                self._publish_listeners = tuple(listeners)

        return remove

    def stats(self) -> dict[str, int]:
        hub = self._hub
        subscriptions = 0 if hub is None or hub.closed else hub.subscriptions()
        return self._stats.snapshot(subscriptions)

    def published(self, topic: str, wire: bytes) -> None:
        """Count a successful publish and tell the publish listeners; called by topics."""
        self._stats.add(published=1)
        listeners = self._publish_listeners
        if listeners:
            message = _envelope.decode(wire)
            for listener in listeners:
                listener(topic, message)

    @classmethod
    def from_settings(
        cls, location: str | Sequence[str] | None, options: Mapping[str, Any]
    ) -> Self:
        """Build a channel from a ``BROADCAST_CHANNELS`` entry, without I/O.

        This default takes no LOCATION and passes OPTIONS as keyword arguments;
        backends that connect somewhere override it.

        Raises:
            TypeError, ValueError: LOCATION or OPTIONS are not usable.
        """
        if location is not None:
            raise ValueError(f"{cls.__name__} takes no LOCATION, got {location!r}.")
        own = channel_options(cls)
        unknown = set(options) - set(own)
        if unknown:
            raise unknown_options_error(cls, unknown, own)
        return cls(**options)

    def topic(self, topic: str) -> ChannelTopic:
        return ChannelTopic(self, validate_topic_name(topic))

    @abstractmethod
    def publish_payload(self, topic: str, payload: bytes) -> None:
        """Publish the wire form of a message (see ``_envelope``) to a validated topic
        name; whoever receives it decodes it with ``_envelope.decode``."""

    async def apublish_payload(self, topic: str, payload: bytes) -> None:
        await asyncio.to_thread(self.publish_payload, topic, payload)

    def open_subscription(
        self, topic: str, *, buffer_bytes: int | None = None
    ) -> ChannelSubscription:
        """Raises ValueError for an invalid ``buffer_bytes``, before any I/O."""
        return ChannelSubscription(
            self.hub, topic, self.buffer_size, self.subscribe_timeout, buffer_bytes
        )
