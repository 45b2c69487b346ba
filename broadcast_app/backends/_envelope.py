"""The wire form of named events, shared by every backend.

A plain ``publish(payload)`` travels as the payload itself, so other Redis clients
interoperate byte for byte, with one exception that keeps the encoding unambiguous:
a payload that begins with ``EVENT_MARKER`` travels escaped. The wire forms are::

    payload                                  a plain message (not starting with the marker)
    EVENT_MARKER + b"\\n" + payload           a plain message whose payload starts with it
    EVENT_MARKER + name + b"\\n" + data       the event ``name`` (UTF-8, no line break)

A publisher in another language sends an event as the third form.
"""

from __future__ import annotations

import re

from ..channel import Message

#: How every event on the wire begins: a NUL, so no text payload can be mistaken for one.
EVENT_MARKER = b"\x00event:"
#: Longest event name, in characters.
MAX_EVENT_NAME_LENGTH = 128
#: Names the SSE stream uses for its own events; a publisher may not take them.
RESERVED_EVENT_NAMES = frozenset({"message", "gap", "binary"})

_NOT_IN_NAME = re.compile(r"[\x00-\x20\x7f-\x9f\ufffd]")


def validate_event_name(name: object) -> str:
    """Return ``name`` if it can name an event.

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: it is empty, longer than ``MAX_EVENT_NAME_LENGTH``, holds white
            space or control characters, or is reserved (``message``, ``gap``, ``binary``).
    """
    if not isinstance(name, str):
        raise TypeError(f"An event name must be a str, not {type(name).__name__}.")
    if not name or len(name) > MAX_EVENT_NAME_LENGTH:
        raise ValueError(
            f"An event name must have 1 to {MAX_EVENT_NAME_LENGTH} characters: {name!r}."
        )
    if _NOT_IN_NAME.search(name):
        raise ValueError(f"An event name must not contain spaces or control characters: {name!r}.")
    if name in RESERVED_EVENT_NAMES:
        raise ValueError(f"The event name {name!r} is reserved; choose another.")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise ValueError(f"An event name must be encodable as UTF-8: {name!r}.") from None
    return name


def encode(payload: bytes, event: str | None = None) -> bytes:
    """Return the wire form of a payload, or of the event ``event`` (already validated).

    Raises:
        ValueError: an event's data is not UTF-8 text.
    """
    if event is not None:
        try:
            payload.decode()
        except UnicodeDecodeError:
            raise ValueError(f"The data of event {event!r} must be UTF-8 text.") from None
        return b"".join((EVENT_MARKER, event.encode(), b"\n", payload))
    if payload.startswith(EVENT_MARKER):
        return EVENT_MARKER + b"\n" + payload
    return payload


def decode(wire: bytes, cursor: str | None = None) -> Message:
    """Return the message a wire form carries; anything malformed stays a plain message."""
    if not wire.startswith(EVENT_MARKER):
        return Message(wire, cursor)
    name, newline, data = wire[len(EVENT_MARKER) :].partition(b"\n")
    if not newline:
        return Message(wire, cursor)
    if not name:
        return Message(data, cursor)
    try:
        event = validate_event_name(name.decode())
    except ValueError:
        return Message(wire, cursor)
    return Message(data, cursor, event)
