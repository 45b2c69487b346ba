"""System checks of the broadcast settings; registered by ``BroadcastAppConfig.ready()``.

Backends are built to be checked, never connected: building a channel does no I/O.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, get_resolver

from .conf import (
    DEFAULT_CHANNEL_ALIAS,
    InvalidChannelBackendError,
    build_channel,
    configured_channels,
    load_authorizer,
    parse_backend,
    parse_location,
    parse_options,
    stream_authorizer,
    stream_buffer_bytes,
    stream_heartbeat,
    stream_max_streams,
    stream_stall_timeout,
)
from .views import BroadcastStreamView

TAG = "broadcast_app"

BACKEND_HINT = (
    "Each BROADCAST_CHANNELS alias maps to a dict with a BACKEND (the dotted path of a "
    "broadcast channel class, e.g. 'broadcast_app.backends.redis.RedisBroadcastChannel'), "
    "an optional LOCATION and optional OPTIONS."
)
LOCATION_HINT = (
    "Give the URL the backend connects to, e.g. 'redis://localhost:6379/0', "
    "'rediss://...' (TLS) or 'unix:///path/to/redis.sock', or for the sharded backend a list "
    "of cluster seed URLs; the in-memory backend takes none."
)
OPTIONS_HINT = (
    "OPTIONS are keyword arguments of the backend (buffer_size, subscribe_timeout, ...) "
    "and, for Redis, of redis.Redis (socket_timeout, ...); check their names and values: "
    "the error names the option."
)
NO_DEFAULT_MESSAGE = (
    f"BROADCAST_CHANNELS has no {DEFAULT_CHANNEL_ALIAS!r} alias; the stream view, the "
    "commands and the app config's channel use it."
)
NO_DEFAULT_HINT = f"Add a {DEFAULT_CHANNEL_ALIAS!r} entry to BROADCAST_CHANNELS."
AUTHORIZER_HINT = "Set it to the dotted path of a function (request, topic) -> bool, sync or async."
HEARTBEAT_HINT = "Give the seconds between keep-alives as a positive number, e.g. 15 or 0.5."
MEMORY_MESSAGE = (
    "The broadcast channel {alias!r} is in-memory while DEBUG is False: its messages never "
    "leave the process, so Celery workers and other web processes cannot reach its "
    "subscribers."
)
MEMORY_HINT = (
    "Use 'broadcast_app.backends.redis.RedisBroadcastChannel' with a LOCATION, or silence "
    "broadcast_app.W001 if a single process publishes and streams."
)
UNGUARDED_MESSAGE = (
    "The broadcast stream view {name} has no authorizer: it refuses every request with 403."
)
UNGUARDED_HINT = (
    "Set BROADCAST_STREAM_AUTHORIZER to the dotted path of a function (request, topic) -> "
    "bool that decides who may stream which topic, or pass authorizer= to as_view()."
)

VIEW_ALIAS_MESSAGE = (
    "The broadcast stream view {name} streams from the channel alias {alias!r}, which "
    "BROADCAST_CHANNELS does not have."
)
VIEW_ALIAS_HINT = (
    "Pass as_view(channel_alias=...) an alias of BROADCAST_CHANNELS, or add the alias there."
)

AppConfigs = Sequence[AppConfig] | None

_BACKEND, _LOCATION, _OPTIONS = "broadcast_app.E001", "broadcast_app.E002", "broadcast_app.E003"
_VIEW = "broadcast_app.E007"


def _diagnose(alias: str, entry: object) -> tuple[str, str] | None:
    """Return ``(check id, message)`` for the first unusable part of an entry, or None."""
    try:
        backend = parse_backend(alias, entry)
    except InvalidChannelBackendError as exc:
        return _BACKEND, str(exc)
    assert isinstance(entry, dict)  # parse_backend() says so.
    try:
        location = parse_location(alias, entry)
        # Built without OPTIONS first, so that an error is blamed on the right key.
        build_channel(alias, backend, location, {}).close()
    except InvalidChannelBackendError as exc:
        return _LOCATION, str(exc)
    try:
        build_channel(alias, backend, location, parse_options(alias, entry)).close()
    except InvalidChannelBackendError as exc:
        return _OPTIONS, str(exc)
    return None


def _channel_entries() -> dict[str, Any]:
    try:
        return configured_channels()
    except InvalidChannelBackendError:
        return {}  # check_channel_backends() reports it.


def _entry_errors(check_id: str, hint: str) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for alias, entry in _channel_entries().items():
        diagnosis = _diagnose(alias, entry)
        if diagnosis is not None and diagnosis[0] == check_id:
            errors.append(Error(diagnosis[1], hint=hint, id=check_id))
    return errors


def check_channel_backends(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E001: BROADCAST_CHANNELS, an entry of it or an entry's BACKEND is unusable."""
    try:
        configured_channels()
    except InvalidChannelBackendError as exc:
        return [Error(str(exc), hint=BACKEND_HINT, id=_BACKEND)]
    return _entry_errors(_BACKEND, BACKEND_HINT)


def check_channel_locations(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E002: a LOCATION the backend cannot parse."""
    return _entry_errors(_LOCATION, LOCATION_HINT)


def check_channel_options(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E003: OPTIONS the backend rejects."""
    return _entry_errors(_OPTIONS, OPTIONS_HINT)


def check_default_channel(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E004: no ``"default"`` alias."""
    configured = _channel_entries()
    if not configured or DEFAULT_CHANNEL_ALIAS in configured:
        return []
    return [Error(NO_DEFAULT_MESSAGE, hint=NO_DEFAULT_HINT, id="broadcast_app.E004")]


def check_stream_authorizer(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E005: BROADCAST_STREAM_AUTHORIZER cannot be imported or is not callable."""
    try:
        stream_authorizer()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=AUTHORIZER_HINT, id="broadcast_app.E005")]
    return []


def check_stream_heartbeat(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E006: BROADCAST_STREAM_HEARTBEAT is not a positive number."""
    try:
        stream_heartbeat()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=HEARTBEAT_HINT, id="broadcast_app.E006")]
    return []


def check_memory_channel_in_production(
    app_configs: AppConfigs, **kwargs: Any
) -> list[CheckMessage]:
    """W001: an in-memory channel while DEBUG is False."""
    if settings.DEBUG:
        return []
    warnings: list[CheckMessage] = []
    for alias, entry in _channel_entries().items():
        try:
            backend = parse_backend(alias, entry)
        except InvalidChannelBackendError:
            continue  # E001
        if not backend.features.crosses_processes:
            message = MEMORY_MESSAGE.format(alias=alias)
            warnings.append(Warning(message, hint=MEMORY_HINT, id="broadcast_app.W001"))
    return warnings


def check_stream_view_authorizer(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """W002: the stream view is mounted but nothing can authorize a request."""
    if getattr(settings, "BROADCAST_STREAM_AUTHORIZER", None):
        return []  # Set: E005 says if it is unusable.
    return [
        Warning(UNGUARDED_MESSAGE.format(name=name), hint=UNGUARDED_HINT, id="broadcast_app.W002")
        for name, view in _mounted_stream_views()
        if _own_attribute(view, "authorizer") is None
    ]


def check_stream_view_settings(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E007: a mounted stream view's own ``authorizer`` or ``channel_alias`` (given to
    ``as_view()`` or set by a subclass) is unusable."""
    configured = _channel_entries()
    errors: list[CheckMessage] = []
    for name, view in _mounted_stream_views():
        authorizer = _own_attribute(view, "authorizer")
        try:
            load_authorizer(authorizer, f"The broadcast stream view {name}: authorizer")
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), hint=AUTHORIZER_HINT, id=_VIEW))
        alias = _own_attribute(view, "channel_alias")
        # A missing default alias is E004's to report.
        if configured and alias != DEFAULT_CHANNEL_ALIAS and alias not in configured:
            message = VIEW_ALIAS_MESSAGE.format(name=name, alias=alias)
            errors.append(Error(message, hint=VIEW_ALIAS_HINT, id=_VIEW))
    return errors


def _mounted_stream_views() -> list[tuple[str, Callable[..., Any]]]:
    """``(description, view)`` for each BroadcastStreamView in the root URLconf."""
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    try:
        patterns = get_resolver().url_patterns
    except (ImportError, ImproperlyConfigured):
        return []  # Django's URL checks report a broken URLconf.
    return list(_stream_views(patterns, "/", ""))


def _stream_views(
    patterns: Sequence[Any], prefix: str, namespace: str
) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Yield ``(description, view)`` for each mounted BroadcastStreamView."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _stream_views(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "view_class", None)
            if isinstance(view_class, type) and issubclass(view_class, BroadcastStreamView):
                if pattern.name:
                    description = f"{namespace + pattern.name!r} at {prefix!r}"
                else:
                    description = f"at {prefix + str(pattern.pattern)!r}"
                yield description, pattern.callback


def _own_attribute(view: Callable[..., Any], name: str) -> object:
    """An attribute as a mounted view sets it: given to ``as_view()``, else the class's."""
    initkwargs: dict[str, Any] = getattr(view, "view_initkwargs", {})
    if name in initkwargs:
        return initkwargs[name]
    value = inspect.getattr_static(getattr(view, "view_class", None), name, None)
    # A plain function set as a class attribute may be wrapped to stay one.
    return value.__func__ if isinstance(value, staticmethod) else value


# -- Stream limits (BROADCAST_STREAM_BUFFER_BYTES, _MAX_STREAMS, _SLOW_CLIENT) --------------

BUFFER_BYTES_HINT = (
    "Give the payload bytes a slow stream may hold back as a positive integer, e.g. "
    "1048576 (1 MiB, the default), or None for no byte bound."
)
MAX_STREAMS_HINT = (
    "Give the most streams one process may hold open as a positive integer, e.g. 10000, "
    "or None (the default) for no limit."
)
SLOW_CLIENT_HINT = (
    "Set BROADCAST_STREAM_SLOW_CLIENT to 'drop' (drop the oldest messages, then send a "
    "gap) or 'disconnect' (end a stream stalled BROADCAST_STREAM_STALL_TIMEOUT seconds, "
    "a positive number)."
)


def _setting_error(read: Callable[[], object], hint: str, check_id: str) -> list[CheckMessage]:
    try:
        read()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint=hint, id=check_id)]
    return []


def check_stream_buffer_bytes(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E020: BROADCAST_STREAM_BUFFER_BYTES is not a positive int or None."""
    return _setting_error(stream_buffer_bytes, BUFFER_BYTES_HINT, "broadcast_app.E020")


def check_stream_max_streams(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E021: BROADCAST_STREAM_MAX_STREAMS is not a positive int or None."""
    return _setting_error(stream_max_streams, MAX_STREAMS_HINT, "broadcast_app.E021")


def check_stream_slow_client(app_configs: AppConfigs, **kwargs: Any) -> list[CheckMessage]:
    """E022: BROADCAST_STREAM_SLOW_CLIENT or BROADCAST_STREAM_STALL_TIMEOUT is unusable."""
    return _setting_error(stream_stall_timeout, SLOW_CLIENT_HINT, "broadcast_app.E022")


#: Every check, in the order they are registered.
ALL_CHECKS = (
    check_channel_backends,
    check_channel_locations,
    check_channel_options,
    check_default_channel,
    check_stream_authorizer,
    check_stream_heartbeat,
    check_memory_channel_in_production,
    check_stream_view_authorizer,
    check_stream_view_settings,
    check_stream_buffer_bytes,
    check_stream_max_streams,
    check_stream_slow_client,
)
