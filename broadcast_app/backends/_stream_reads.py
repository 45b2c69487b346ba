"""What the Streams reader keeps for each listened stream, and how it sizes and takes in
the replies of its XREAD."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..channel import Message
from . import _envelope
from ._inbox import Latch
from ._stream_scripts import entry_size, page_count, payload_of

#: Most entries read from each stream per XREAD (fewer when entries are large, or many
#: streams have entries: see ``page_count``).
READ_COUNT = 512


class StreamReadState:
    """The reader's state for one listened stream: its topic and key, the latch that
    confirms the topic, and the last ID delivered (or captured)."""

    __slots__ = ("broken", "key", "latch", "position", "seen", "topic")

    def __init__(self, topic: str, key: bytes) -> None:
        self.topic = topic
        self.key = key
        self.latch = Latch()
        # Written by the reader thread only. Position: None until the stream's last ID is
        # captured. Seen: entries the stream had up to position, where Redis tells.
        self.position: bytes | None = None
        self.seen: int | None = None
        self.broken = False


class ReadPaging:
    """Sizes each XREAD's COUNT so that a reply stays within ``PAGE_BYTES``: from the
    largest entry expected (the channel's ``max_payload_bytes``, or a larger entry met,
    written by another client), and from how many streams had entries in the last
    reply (all of them at first, and after a reconnect, when backlogs may wait)."""

    def __init__(self, largest: int) -> None:
        self.largest = largest
        self.active: int | None = None

    def count(self, streams: int) -> int:
        active = streams if self.active is None else min(self.active, streams)
        return page_count(self.largest, active, READ_COUNT)


class ReadBatch(NamedTuple):
    """What an XREAD reply brings: the messages, and each stream's new position with the
    number of its entries read."""

    messages: list[tuple[str, Message]]
    advanced: list[tuple[StreamReadState, bytes, int]]


def take_reply(
    reply: Any, request: dict[bytes, StreamReadState], listened: set[bytes], paging: ReadPaging
) -> ReadBatch:
    """Decode an XREAD reply (RESP2 list or RESP3 map) for the ``listened`` keys of
    ``request``, and tell ``paging`` what it held."""
    batch = ReadBatch([], [])
    for key, entries in reply.items() if isinstance(reply, dict) else reply:
        state = request.get(key)
        if state is None or not entries or key not in listened:
            continue
        batch.messages.extend(
            (state.topic, _envelope.decode(payload_of(fields), entry_id.decode()))
            for entry_id, fields in entries
        )
        batch.advanced.append((state, entries[-1][0], len(entries)))
        paging.largest = max(paging.largest, *(entry_size(fields) for _, fields in entries))
    paging.active = len(batch.advanced) or None
    return batch
