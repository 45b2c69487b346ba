"""Cursors of the backends that keep history: Redis stream IDs, ``"<ms>-<seq>"``.

Parsing, formatting and ordering them; the cursor types of the public contract
(``CursorTopic``, ``CursorSubscription``, ``ORIGIN``) live in ``broadcast_app.channel``.
"""

from __future__ import annotations

import re

from ..channel import Message

#: Longest accepted cursor: two 20-digit numbers and the dash.
MAX_CURSOR_LENGTH = 41

_UINT64_MAX = 2**64 - 1
_CURSOR = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")

#: A parsed cursor, ordered like the messages: (milliseconds, sequence number).
Position = tuple[int, int]


def parse_cursor(cursor: object) -> Position:
    """Return the position ``cursor`` names.

    Raises:
        TypeError: ``cursor`` is not a ``str``.
        ValueError: ``cursor`` is not ``"<ms>-<seq>"`` with two decimal numbers that
            each fit in 64 bits unsigned.
    """
    if not isinstance(cursor, str):
        raise TypeError(f"A cursor must be a str, not {type(cursor).__name__}.")
    match = _CURSOR.fullmatch(cursor) if len(cursor) <= MAX_CURSOR_LENGTH else None
    if match is None:
        shown = cursor if len(cursor) <= MAX_CURSOR_LENGTH else cursor[:MAX_CURSOR_LENGTH] + "..."
        raise ValueError(
            f"A cursor must look like '1700000000000-0' (two decimal numbers joined by "
            f"'-'), not {shown!r}."
        )
    milliseconds, sequence = int(match[1]), int(match[2])
    if milliseconds > _UINT64_MAX or sequence > _UINT64_MAX:
        raise ValueError(f"Both numbers of a cursor must fit in 64 bits, not {cursor!r}.")
    return milliseconds, sequence


def format_cursor(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def successor(position: Position) -> Position | None:
    """The first position after ``position``; None if there is none."""
    milliseconds, sequence = position
    if sequence < _UINT64_MAX:
        return milliseconds, sequence + 1
    if milliseconds < _UINT64_MAX:
        return milliseconds + 1, 0
    return None


def position_of(message: Message) -> Position:
    """The position of a message that has a cursor."""
    milliseconds, _, sequence = (message.cursor or "").partition("-")
    return int(milliseconds), int(sequence)
