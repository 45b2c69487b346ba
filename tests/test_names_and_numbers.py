"""The engine's own checks of what callers give it: topic names and numeric options.

Both run before any I/O, so the in-memory channel and bare URLs suffice (nothing connects).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from broadcast_app.backends.base import positive_int, positive_number, validate_topic_name
from broadcast_app.backends.memory import InMemoryBroadcastChannel
from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.backends.sharded import ShardedRedisBroadcastChannel
from broadcast_app.backends.streams import StreamsBroadcastChannel

#: Nothing listens there; building a channel must not try.
NOWHERE = "redis://127.0.0.1:9/0"

# -- topic names -----------------------------------------------------------------------------

#: One of each kind of character a terminal or a log may act on, or that hides a decoding error.
UNSAFE = {
    "nul": "\x00",
    "tab": "\t",
    "newline": "\n",
    "escape": "\x1b",
    "unit-separator": "\x1f",
    "del": "\x7f",
    "c1-first": "\x80",
    "next-line": "\x85",
    "csi": "\x9b",
    "osc": "\x9d",
    "c1-last": "\x9f",
    "replacement": "\ufffd",
}


@pytest.mark.parametrize("character", UNSAFE.values(), ids=UNSAFE.keys())
@pytest.mark.parametrize("where", ["alone", "start", "middle", "end"])
def test_topic_name_rejects_control_characters_and_the_replacement_character(
    character: str, where: str
) -> None:
    name = {
        "alone": character,
        "start": character + "abc",
        "middle": "a" + character + "c",
        "end": "ab" + character,
    }[where]
    with pytest.raises(ValueError, match="topic name") as raised:
        validate_topic_name(name)
    # The message names the character by code point: printed as is, it may be invisible
    # (U+FFFD looks like any other glyph) or act on the terminal.
    assert f"U+{ord(character):04X}" in str(raised.value)
    assert character not in str(raised.value)


def test_channels_reject_such_topic_names_before_any_io() -> None:
    with RedisBroadcastChannel.from_url(NOWHERE) as channel:
        for character in UNSAFE.values():
            with pytest.raises(ValueError, match="topic name"):
                channel.topic(f"jobs:{character}")


@pytest.mark.parametrize(
    "name",
    ["jobs:1", "a b", "ünïcödé 主题", "\xa0nbsp", "\u200bzero-width", "emoji 🎉", "x" * 1024],
)
def test_topic_name_accepts_printable_unicode(name: str) -> None:
    assert validate_topic_name(name) == name


# -- numeric options -------------------------------------------------------------------------

NOT_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NOT_FINITE, ids=["nan", "inf", "-inf"])
def test_positive_numbers_reject_nan_and_infinity(value: float) -> None:
    with pytest.raises(ValueError, match="subscribe_timeout must be a positive, finite number"):
        positive_number("subscribe_timeout", value)
    with pytest.raises(ValueError, match="buffer_size must be a positive integer"):
        positive_int("buffer_size", value)


@pytest.mark.parametrize("value", [0, -1, 0.0, True, "1", None])
def test_positive_numbers_reject_what_is_not_above_zero(value: object) -> None:
    with pytest.raises(ValueError, match="positive"):
        positive_number("subscribe_timeout", value)
    with pytest.raises(ValueError, match="positive"):
        positive_int("buffer_size", value)


def test_positive_numbers_keep_usable_values() -> None:
    assert positive_number("subscribe_timeout", 1) == 1.0
    assert positive_number("subscribe_timeout", 1e-3) == 1e-3
    assert positive_int("buffer_size", 1) == 1


@pytest.mark.parametrize("value", NOT_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("backend", "option"),
    [
        (InMemoryBroadcastChannel, "subscribe_timeout"),
        (InMemoryBroadcastChannel, "buffer_size"),
        (RedisBroadcastChannel, "health_check_interval"),
        (ShardedRedisBroadcastChannel, "health_check_interval"),
        (StreamsBroadcastChannel, "retention_seconds"),
        (StreamsBroadcastChannel, "maxlen"),
    ],
)
def test_backends_reject_non_finite_numeric_options(
    backend: type[InMemoryBroadcastChannel], option: str, value: float
) -> None:
    location = None if backend is InMemoryBroadcastChannel else NOWHERE
    with pytest.raises(ValueError, match=option):
        backend.from_settings(location, {option: value}).close()


@pytest.mark.parametrize("value", NOT_FINITE, ids=["nan", "inf", "-inf"])
def test_receive_timeouts_must_be_finite(value: float) -> None:
    # nan used to wait forever, and infinity to raise OverflowError; None waits forever.
    with InMemoryBroadcastChannel() as channel, channel.topic("t").subscribe() as subscription:
        with pytest.raises(ValueError, match="timeout must be"):
            subscription.receive(timeout=value)
        with pytest.raises(ValueError, match="timeout must be"):
            asyncio.run(subscription.areceive(timeout=value))
