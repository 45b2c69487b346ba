"""Settings: ``BROADCAST_CHANNELS`` aliases become channels, one per alias per process.

``BROADCAST_CHANNELS`` has the shape of ``CACHES``: each alias maps to
``{"BACKEND": dotted path, "LOCATION": URL or list of URLs, "OPTIONS": {...}}``.
Without the setting, ``"default"`` is an in-memory channel.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .channel import BroadcastChannel, ChannelFeatures

DEFAULT_CHANNEL_ALIAS = "default"
DEFAULT_BACKEND = "broadcast_app.backends.memory.InMemoryBroadcastChannel"
#: Seconds of silence after which the stream view sends a keep-alive comment.
DEFAULT_STREAM_HEARTBEAT = 15.0

_ENTRY_KEYS = frozenset({"BACKEND", "LOCATION", "OPTIONS"})


class InvalidChannelBackendError(ImproperlyConfigured):
    """``BROADCAST_CHANNELS`` names a backend that cannot be used."""


class ChannelBackend(Protocol):
    """What a BACKEND path names: a channel class that says what its channels can do,
    and builds one from its settings entry.

    Every class of ``broadcast_app.backends`` is one; the face needs nothing else of it.
    """

    @property
    def features(self) -> ChannelFeatures:
        """What the channels of this class can do, known before one is built."""
        ...

    def from_settings(
        self, location: str | Sequence[str] | None, options: Mapping[str, Any], /
    ) -> BroadcastChannel:
        """Build a channel from LOCATION and OPTIONS, without I/O.

        Raises:
            TypeError, ValueError: LOCATION or OPTIONS are not usable.
        """
        ...


#: ``authorizer(request, topic)``: True lets the request stream the topic, anything else
#: refuses it. May be a coroutine function.
Authorizer = Callable[[HttpRequest, str], bool | Awaitable[bool]]


def configured_channels() -> dict[str, Any]:
    """Return ``BROADCAST_CHANNELS``, or the in-memory default when it is not set.

    Raises:
        InvalidChannelBackendError: the setting is not a dict.
    """
    configured = getattr(settings, "BROADCAST_CHANNELS", None)
    if configured is None:
        return {DEFAULT_CHANNEL_ALIAS: {"BACKEND": DEFAULT_BACKEND}}
    if not isinstance(configured, dict):
        raise InvalidChannelBackendError(
            f"BROADCAST_CHANNELS must be a dict of aliases, not {type(configured).__name__}."
        )
    return configured


def channel_entry(alias: str) -> dict[str, Any]:
    """Return the entry of ``alias`` in ``BROADCAST_CHANNELS``.

    Raises:
        InvalidChannelBackendError: the alias is not configured.
    """
    configured = configured_channels()
    if alias not in configured:
        raise InvalidChannelBackendError(f"The broadcast channel alias {alias!r} doesn't exist.")
    entry: dict[str, Any] = configured[alias]
    return entry


def parse_backend(alias: str, entry: object) -> ChannelBackend:
    """Return the backend class of an entry.

    Raises:
        InvalidChannelBackendError: the entry is malformed, or its BACKEND is not usable.
    """
    where = f"BROADCAST_CHANNELS[{alias!r}]"
    if not isinstance(entry, dict):
        raise InvalidChannelBackendError(f"{where} must be a dict, not {type(entry).__name__}.")
    unknown = sorted(map(str, set(entry) - _ENTRY_KEYS))
    if unknown:
        raise InvalidChannelBackendError(
            f"{where} has unknown keys {unknown}; use BACKEND, LOCATION and OPTIONS."
        )
    path = entry.get("BACKEND")
    if not isinstance(path, str) or not path:
        raise InvalidChannelBackendError(f"{where} has no BACKEND, the dotted path of a class.")
    return import_backend(path)


def parse_location(alias: str, entry: dict[str, Any]) -> str | list[str] | None:
    """Return the LOCATION of an entry: a URL, a list of URLs or None.

    Raises:
        InvalidChannelBackendError: it is something else.
    """
    location = entry.get("LOCATION")
    if location is None or isinstance(location, str):
        return location
    if isinstance(location, list | tuple) and all(isinstance(url, str) for url in location):
        return list(location)
    raise InvalidChannelBackendError(
        f"BROADCAST_CHANNELS[{alias!r}]['LOCATION'] must be a URL or a list of URLs, "
        f"not {location!r}."
    )


def parse_options(alias: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the OPTIONS of an entry.

    Raises:
        InvalidChannelBackendError: they are not a dict with str keys.
    """
    options = entry.get("OPTIONS", {})
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        raise InvalidChannelBackendError(
            f"BROADCAST_CHANNELS[{alias!r}]['OPTIONS'] must be a dict with str keys, "
            f"not {options!r}."
        )
    return dict(options)


def import_backend(path: str) -> ChannelBackend:
    """Return the channel class at dotted ``path``.

    Raises:
        InvalidChannelBackendError: it cannot be imported or is not a ``ChannelBackend``.
    """
    try:
        backend = import_string(path)
    except ImportError as exc:
        raise InvalidChannelBackendError(
            f"Could not import broadcast channel backend {path!r}: {exc}"
        ) from exc
    # Asked of the class, as of a channel: what it can do, not what it descends from.
    if not (
        isinstance(backend, type)
        and isinstance(getattr(backend, "features", None), ChannelFeatures)
        and callable(getattr(backend, "from_settings", None))
    ):
        raise InvalidChannelBackendError(
            f"{path!r} is not a broadcast channel backend (a channel class with features "
            "and from_settings(), such as those of broadcast_app.backends)."
        )
    return cast(ChannelBackend, backend)


def build_channel(
    alias: str,
    backend: ChannelBackend,
    location: str | list[str] | None,
    options: dict[str, Any],
) -> BroadcastChannel:
    """Build a channel with the backend's ``from_settings()``. No I/O.

    Raises:
        InvalidChannelBackendError: the backend rejects the LOCATION or the OPTIONS.
    """
    # import_backend() checked that it is a class.
    name = f"{backend.__module__}.{getattr(backend, '__qualname__', '')}"
    try:
        return backend.from_settings(location, options)
    except (TypeError, ValueError) as exc:
        raise InvalidChannelBackendError(
            f"The broadcast channel {alias!r} cannot be built by {name}: {exc}"
        ) from exc


def create_channel(alias: str) -> BroadcastChannel:
    """Build a new channel for ``alias`` from the settings. No I/O: backends connect lazily.

    Raises:
        InvalidChannelBackendError: the alias is unknown or its settings are unusable.
    """
    entry = channel_entry(alias)
    backend = parse_backend(alias, entry)
    return build_channel(alias, backend, parse_location(alias, entry), parse_options(alias, entry))


class ChannelHandler:
    """The channels of ``BROADCAST_CHANNELS``, each built on first use.

    One channel per alias per process, shared by every thread and task. Thread-safe.
    ``reset()`` closes them all; the next access builds them from the current settings.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, BroadcastChannel] = {}

    def __getitem__(self, alias: str) -> BroadcastChannel:
        """Return the channel of ``alias``.

        Raises:
            InvalidChannelBackendError: the alias is unknown or its settings are unusable.
        """
        channel = self._channels.get(alias)
        if channel is not None:
            return channel
        with self._lock:
            channel = self._channels.get(alias)
            if channel is None:
                channel = self._channels[alias] = create_channel(alias)
            return channel

    def built(self) -> dict[str, BroadcastChannel]:
        """The channels built so far in this process, by alias."""
        with self._lock:
            return dict(self._channels)

    def reset(self) -> None:
        """Close every channel built so far and forget it (their subscriptions end)."""
        with self._lock:
            built, self._channels = self._channels, {}
        for channel in built.values():
            channel.close()


#: The process-wide channels.
channels = ChannelHandler()


def get_channel(alias: str = DEFAULT_CHANNEL_ALIAS) -> BroadcastChannel:
    """Return the channel configured under ``alias`` in ``BROADCAST_CHANNELS``.

    Built on first use without I/O; the same object for every thread of the process.

    Raises:
        InvalidChannelBackendError: the alias is unknown or its settings are unusable.
    """
    return channels[alias]


def reset_channels(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: channels follow ``override_settings``."""
    if setting == "BROADCAST_CHANNELS":
        channels.reset()


def stream_heartbeat() -> float:
    """Return ``BROADCAST_STREAM_HEARTBEAT`` in seconds.

    Raises:
        ImproperlyConfigured: it is not a positive, finite number.
    """
    value = getattr(settings, "BROADCAST_STREAM_HEARTBEAT", DEFAULT_STREAM_HEARTBEAT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ImproperlyConfigured(
            f"BROADCAST_STREAM_HEARTBEAT must be a positive number of seconds, not {value!r}."
        )
    return float(value)


def load_authorizer(value: object, source: str = "The authorizer") -> Authorizer | None:
    """Resolve an authorizer given as a callable or a dotted path; None for None or "".

    Raises:
        ImproperlyConfigured: the path cannot be imported or names something not callable.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{source} {value!r} cannot be imported: {exc}") from exc
    if not callable(value):
        raise ImproperlyConfigured(f"{source} {value!r} is not callable.")
    return cast(Authorizer, value)


def stream_authorizer() -> Authorizer | None:
    """Return the callable ``BROADCAST_STREAM_AUTHORIZER`` names, or None when unset.

    Raises:
        ImproperlyConfigured: it cannot be imported or is not callable.
    """
    value = getattr(settings, "BROADCAST_STREAM_AUTHORIZER", None)
    return load_authorizer(value, "BROADCAST_STREAM_AUTHORIZER")


#: Default of ``BROADCAST_STREAM_BUFFER_BYTES``: payload bytes a slow stream may hold back.
DEFAULT_STREAM_BUFFER_BYTES = 1024 * 1024
#: Values of ``BROADCAST_STREAM_SLOW_CLIENT``: drop the oldest messages (and send a
#: ``gap``), or end a stream whose sends stay stalled ``BROADCAST_STREAM_STALL_TIMEOUT`` s.
SLOW_CLIENT_POLICIES = ("drop", "disconnect")
DEFAULT_STREAM_STALL_TIMEOUT = 30.0


def _setting_count(name: str, default: int | None) -> int | None:
    value = getattr(settings, name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive integer or None, not {value!r}.")
    return value


def stream_buffer_bytes() -> int | None:
    """Return ``BROADCAST_STREAM_BUFFER_BYTES`` (None: no byte bound, only the count).

    Raises:
        ImproperlyConfigured: it is not a positive int or None.
    """
    return _setting_count("BROADCAST_STREAM_BUFFER_BYTES", DEFAULT_STREAM_BUFFER_BYTES)


def stream_max_streams() -> int | None:
    """Return ``BROADCAST_STREAM_MAX_STREAMS``, the most open streams per process
    (None, the default: no limit).

    Raises:
        ImproperlyConfigured: it is not a positive int or None.
    """
    return _setting_count("BROADCAST_STREAM_MAX_STREAMS", None)


def stream_stall_timeout() -> float | None:
    """Return the seconds after which a stalled stream ends: None under the ``"drop"``
    policy (``BROADCAST_STREAM_SLOW_CLIENT``), else ``BROADCAST_STREAM_STALL_TIMEOUT``.

    Raises:
        ImproperlyConfigured: either setting has a bad value.
    """
    policy = getattr(settings, "BROADCAST_STREAM_SLOW_CLIENT", "drop")
    if policy not in SLOW_CLIENT_POLICIES:
        raise ImproperlyConfigured(
            f"BROADCAST_STREAM_SLOW_CLIENT must be one of {SLOW_CLIENT_POLICIES}, not {policy!r}."
        )
    value = getattr(settings, "BROADCAST_STREAM_STALL_TIMEOUT", DEFAULT_STREAM_STALL_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ImproperlyConfigured(
            f"BROADCAST_STREAM_STALL_TIMEOUT must be a positive number of seconds, not {value!r}."
        )
    return None if policy == "drop" else float(value)
