"""Cursors: positions in a topic's history after which a subscription can resume.

A backend that keeps history (Redis Streams) returns ``CursorTopic`` topics. Their
subscriptions hand out each message with its cursor; a consumer that stores the
cursor of the last message it handled can later subscribe again from it and miss
nothing the backend still retains. Cursors are Redis stream IDs, ``"<ms>-<seq>"``.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass

from ..channel import Topic
from .subscription import ChannelSubscription

#: The cursor before every message: subscribing from it replays all that is retained.
ORIGIN = "0-0"
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


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """A message and its cursor: subscribe again from ``cursor`` to get what follows it."""

    payload: bytes
    cursor: str

    @property
    def position(self) -> Position:
        milliseconds, _, sequence = self.cursor.partition("-")
        return int(milliseconds), int(sequence)


class CursorSubscription(ChannelSubscription):
    """A subscription that can also hand out each message with its cursor.

    The ``...with_cursor`` and the plain methods draw from the same messages; use
    either, or both, from the single consumer.
    """

    @abstractmethod
    def receive_with_cursor(self, timeout: float | None = 0.1) -> StreamMessage | None:
        """Like ``receive()``, but return the message with its cursor."""

    @abstractmethod
    async def areceive_with_cursor(self, timeout: float | None = 0.1) -> StreamMessage | None:
        """Async twin of ``receive_with_cursor()``."""


class CursorTopic(Topic):
    """A topic whose subscriptions can start from a cursor.

    Test for it with ``isinstance(topic, CursorTopic)``.
    """

    @abstractmethod
    def subscribe(self, cursor: str | None = None) -> CursorSubscription:
        """Return a new, not yet started, subscription.

        Without ``cursor``, it receives the messages published after it started, like
        any subscription. With one, it first receives every retained message after
        ``cursor`` (``ORIGIN``: all of them), then the live ones, with none missed or
        repeated at the seam. A cursor older than what is retained counts as a gap.

        Raises:
            TypeError, ValueError: ``cursor`` is not a valid cursor (see ``parse_cursor``).
        """
