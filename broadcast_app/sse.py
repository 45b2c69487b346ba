"""Server-Sent Events framing, as the WHATWG HTML standard parses it.

A payload becomes one event. If the browser's ``EventSource`` can hand it back
exactly — valid UTF-8 without a carriage return, which ``EventSource`` would turn
into a line feed — it is a ``message`` event whose ``data`` is the payload's text.
Any other payload is a ``binary`` event whose ``data`` is the payload in standard
base64, so nothing is ever altered silently. A named event (``send_event``) is an
event of that name whose ``data`` is its text (UTF-8 by construction; line breaks
reach the browser as LF). Every kind may carry an ``id``, which the browser sends
back as ``Last-Event-ID`` when it reconnects.
"""

from __future__ import annotations

import base64
import re
import weakref

from .channel import Message

CONTENT_TYPE = "text/event-stream; charset=utf-8"

#: The event sent for a payload that is not exactly representable as text.
BINARY_EVENT = "binary"
#: The event sent when the subscriber may have missed messages (overflow, reconnect).
GAP_EVENT = "gap"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A field value ends at any line break; NUL is stripped too as the spec ignores
# ``id`` fields that contain it.
_NOT_IN_FIELD = re.compile(r"[\r\n\x00]")


def field_value(value: str) -> str:
    """Return ``value`` without the characters that would end or void a field."""
    return _NOT_IN_FIELD.sub("", value)


def event(data: str, name: str | None = None, event_id: str | None = None) -> bytes:
    """Frame one event: one ``data:`` line per line of ``data``.

    Line breaks of every kind (CRLF, CR, LF) separate lines, as the parser would
    read them; the parser rebuilds ``data`` with LF between the lines. ``name`` and
    ``event_id`` become the ``event`` and ``id`` fields (None: no field).
    """
    lines = [] if name is None else [f"event: {field_value(name)}"]
    if event_id is not None:
        lines.append(f"id: {field_value(event_id)}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def _frame_message(message: Message) -> bytes:
    if message.event is None:
        return payload_event(message.payload, message.cursor)
    text = message.payload.decode("utf-8", "replace")
    return event(text, message.event, message.cursor)


def payload_event(payload: bytes, event_id: str | None = None) -> bytes:
    """Frame a payload: a ``message`` event if its text survives intact, else ``binary``."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return binary_event(payload, event_id)
    if "\r" in text:
        return binary_event(payload, event_id)
    return event(text, event_id=event_id)


def binary_event(payload: bytes, event_id: str | None = None) -> bytes:
    """Frame a payload as a ``binary`` event carrying it in standard base64."""
    return event(base64.b64encode(payload).decode("ascii"), BINARY_EVENT, event_id)


def event_id(cursor: str) -> bytes:
    """Frame an ``id`` alone: no event fires, but the browser adopts it as its last event ID."""
    return f"id: {field_value(cursor)}\n\n".encode()


#: Frames of the messages alive in this process. Every subscription of a process
#: receives the same ``Message`` object (see ``channel.Message``), so each message is
#: framed once however many streams send it; an entry goes when its message does.
_frames: weakref.WeakKeyDictionary[Message, bytes] = weakref.WeakKeyDictionary()


def message_event(message: Message) -> bytes:
    """Return the frame of a delivered message, with its cursor as the ``id``.

    Framed once per message object (see ``_frames``). Thread-safe.
    """
    frame = _frames.get(message)
    if frame is None:
        frame = _frames[message] = _frame_message(message)
    return frame


def comment(text: str) -> bytes:
    """Frame a comment line: ignored by clients, it keeps idle connections alive."""
    return f": {field_value(text)}\n\n".encode()


def retry(seconds: float) -> bytes:
    """Frame the reconnection delay the client should use after the stream ends."""
    return f"retry: {round(seconds * 1000)}\n\n".encode()


KEEP_ALIVE = comment("keep-alive")
GAP = event("", GAP_EVENT)
