"""Options checked when a channel is built, not when it first connects.

redis-py keeps what it is given until it connects, so a wrong type or a misspelt name
would surface at the first publish or subscribe, far from the settings that caused it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.connection import AbstractConnection, Connection, SSLConnection

#: Options that say where to connect: the URL does, never an option.
_WHERE = frozenset(
    {"self", "kwargs", "host", "port", "path", "connection_pool", "unix_socket_path"}
)

#: What a ``redis.Redis`` and its connections take besides where to connect.
CLIENT_OPTIONS = (
    frozenset(
        name
        for function in (
            redis.Redis.__init__,
            AbstractConnection.__init__,
            Connection.__init__,
            SSLConnection.__init__,
        )
        for name in inspect.signature(function).parameters
    )
    - _WHERE
)

#: The backends an option given to the wrong one is looked up in, by dotted path.
_BACKENDS = (
    "broadcast_app.backends.memory.InMemoryBroadcastChannel",
    "broadcast_app.backends.redis.RedisBroadcastChannel",
    "broadcast_app.backends.sharded.ShardedRedisBroadcastChannel",
    "broadcast_app.backends.streams.StreamsBroadcastChannel",
)


def channel_options(backend: type) -> list[str]:
    """The keyword-only arguments of ``backend``'s constructor: its own options."""
    return [
        parameter.name
        for parameter in inspect.signature(backend).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def unknown_options_error(backend: type, unknown: Iterable[str], known: Iterable[str]) -> TypeError:
    """Return the TypeError for options ``backend`` does not take: each named, with the
    option it most resembles among ``known``, or the other backends that take it."""
    known = sorted(set(known))
    sentences = []
    for name in sorted(unknown):
        sentence = f"{backend.__name__} takes no option {name!r}"
        takers = [
            other.__name__ for other in _other_backends(backend) if name in channel_options(other)
        ]
        close = difflib.get_close_matches(name, known, n=1)
        if takers:
            sentence += f": only {' and '.join(takers)} take{'s' if len(takers) == 1 else ''} it."
        elif name in CLIENT_OPTIONS:
            sentence += ": it is an option of the Redis client, which only Redis backends have."
        elif close:
            sentence += f"; did you mean {close[0]!r}?"
        else:
            sentence += "."
        sentences.append(sentence)
    return TypeError(" ".join(sentences))


def _other_backends(backend: type) -> list[type]:
    others = []
    for path in _BACKENDS:
        module, _, name = path.rpartition(".")
        other = getattr(importlib.import_module(module), name)
        if not issubclass(backend, other) and not issubclass(other, backend):
            others.append(other)
    return others


def _seconds(name: str, value: object, *, zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}.")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        lowest = "zero or more" if zero else "positive"
        raise ValueError(f"{name} must be a {lowest}, finite number of seconds, not {value!r}.")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}.")


def _database(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a database number (0 or more), not {value!r}.")


def _protocol(name: str, value: object) -> None:
    if value not in (2, 3, "2", "3") or isinstance(value, bool):
        raise ValueError(f"{name} must be 2 (RESP2) or 3 (RESP3), not {value!r}.")


def _text(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}.")


_CHECKS: dict[str, Callable[[str, object], None]] = {
    "socket_timeout": _seconds,
    "socket_connect_timeout": _seconds,
    "health_check_interval": lambda name, value: _seconds(name, value, zero=True),
    "socket_keepalive": _flag,
    "retry_on_timeout": _flag,
    "decode_responses": _flag,
    "single_connection_client": _flag,
    "ssl_check_hostname": _flag,
    "db": _database,
    "protocol": _protocol,
    "username": _text,
    "password": _text,
    "client_name": _text,
    "encoding": _text,
    "encoding_errors": _text,
}


def check_client_options(options: Mapping[str, Any]) -> None:
    """Check the values redis-py would only use when connecting (timeouts, flags, the
    database, the protocol, credentials).

    Raises:
        TypeError, ValueError: naming the first unusable option.
    """
    for name, check in _CHECKS.items():
        if name in options:
            check(name, options[name])


def check_url_database(url: str) -> None:
    """Refuse a ``redis://`` or ``rediss://`` URL whose path is not a database number;
    redis-py would ignore it and use database 0.

    Raises:
        ValueError: quoting the path only (the URL may hold a password).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return
    database = unquote(parts.path).strip("/")
    if database and not re.fullmatch("[0-9]+", database):
        raise ValueError(
            f"The path of a Redis URL is a database number, as in redis://host:6379/0, "
            f"not {database!r}."
        )
