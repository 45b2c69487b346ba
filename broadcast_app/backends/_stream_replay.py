"""Replay for Redis Streams subscriptions: the history after a cursor, then the live feed.

A subscription given a cursor reads the stream's retained entries after it, a page at a
time, while its inbox holds the live messages back; once a page comes up short, the live
messages take over from where the replay ended, with nothing missed or repeated.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator

import redis
from redis.client import NEVER_DECODE
from redis.commands.core import Script
from redis.exceptions import RedisError

from ..channel import CursorSubscription, Message
from ..exceptions import BroadcastChannelError, SubscriptionClosedError
from . import _envelope
from ._hub import Hub
from ._inbox import Inbox, Latch
from ._stats import ChannelStats
from ._stream_scripts import Probe, payload_of, text
from .cursors import Position, format_cursor, position_of, successor
from .subscription import ChannelSubscription, check_timeout

#: Entries fetched per XRANGE while replaying.
REPLAY_PAGE = 512


class StreamHistory:
    """The retained entries of one stream after a position, read a page at a time.

    ``read()`` only reads: the subscription applies what it returns, so a read whose
    result is dropped (a cancelled task) changes nothing.
    """

    def __init__(self, client: redis.Redis, probe: Script, key: str, after: Position) -> None:
        self._client = client
        self._probe = probe
        self._key = key
        self.after = after
        # Replaying from the origin asks for whatever is retained: nothing can be missing.
        self.checked = after == (0, 0)

    def read(self) -> tuple[list[Message], bool]:
        """Return the next page, and whether entries after the start may have been lost.

        Blocks on one or two round trips.

        Raises:
            BroadcastChannelError: Redis could not be read.
        """
        try:
            lost = False
            if not self.checked:
                (probe,) = Probe.parse(self._probe(keys=[self._key]))
                lost = probe.may_have_lost(format_cursor(self.after), if_missing=True)
            start = successor(self.after)
            if start is None:
                return [], lost
            # Raw bytes whatever the client decodes; redis-py leaves this call unannotated.
            entries = self._client.execute_command(  # type: ignore[no-untyped-call]
                "XRANGE", self._key, format_cursor(start), "+", "COUNT", REPLAY_PAGE,
                **{NEVER_DECODE: True},
            )  # fmt: skip
        except RedisError as exc:
            raise BroadcastChannelError(
                f"Could not replay the history of {self._key!r}: {exc}"
            ) from exc
        messages = [_envelope.decode(payload_of(f), text(i)) for i, f in entries]
        return messages, lost


class HoldingInbox(Inbox):
    """An inbox that can hold live messages back while a replay catches up.

    While holding, it keeps the newest ``capacity`` messages without waking the
    consumer; what it drops is not counted as lost, as the replay reads it from Redis.
    After the hand-over it discards live messages the replay delivered already, which
    may still arrive if the reader thread lags behind the replay.
    """

    __slots__ = ("_floor", "_holding", "held_drops")

    def __init__(
        self,
        topic: str,
        capacity: int,
        max_bytes: int | None,
        stats: ChannelStats,
        *,
        holding: bool,
    ) -> None:
        super().__init__(topic, capacity, max_bytes, stats)
        self._holding = holding
        self._floor: Position | None = None
        #: Messages dropped while holding: a replay page that ends after a drop must be
        #: followed by another before the live messages can take over.
        self.held_drops = 0

    def push(self, item: Message) -> bool:
        if self._holding or self._floor is not None:
            with self._lock:
                if self._holding:
                    if not self.closed:
                        self.held_drops += self._make_room(len(item.payload))
                        self._append(item)
                    return False
                if self._floor is not None:
                    if position_of(item) <= self._floor:
                        return False
                    self._floor = None  # Later messages have higher IDs still.
        return super().push(item)

    def hand_over(self, after: Position, held_drops: int) -> bool:
        """Stop holding unless messages were dropped since ``held_drops`` was read.

        From now on, live messages up to ``after`` (replayed already) are discarded.
        Returns False, still holding, if the live messages may not join the replay
        without a hole.
        """
        with self._lock:
            if self.held_drops != held_drops:
                return False
            while self._items and position_of(self._items[0]) <= after:
                self._pop_oldest()
            if not self._items:
                self._floor = after
            # Last: push() reads _holding without the lock, and must then see the floor.
            self._holding = False
        return True


class StreamsSubscription(ChannelSubscription, CursorSubscription):
    """A subscription to a stream; with a cursor, it replays the history first.

    The replay reads pages of ``REPLAY_PAGE`` entries through the client's pool, in the
    consumer's thread (a worker thread for asyncio consumers), as the consumer asks for
    messages. If Redis cannot be read meanwhile, ``receive()`` and its variants raise
    ``BroadcastChannelError``; calling again resumes the replay where it stopped.
    """

    def __init__(
        self,
        hub: Hub,
        topic: str,
        buffer_size: int,
        subscribe_timeout: float,
        *,
        history: StreamHistory | None,
        buffer_bytes: int | None = None,
    ) -> None:
        self._history = history
        self._page: deque[Message] = deque()
        self._cursor = None if history is None else format_cursor(history.after)
        super().__init__(hub, topic, buffer_size, subscribe_timeout, buffer_bytes)

    def _create_inbox(self, topic: str, buffer_size: int, buffer_bytes: int | None) -> Inbox:
        self._holding_inbox = HoldingInbox(
            topic, buffer_size, buffer_bytes, self._hub.stats, holding=self._history is not None
        )
        return self._holding_inbox

    @property
    def cursor(self) -> str:
        """See ``CursorSubscription.cursor``.

        Raises:
            BroadcastChannelError: the subscription has not started, so it has no position.
        """
        if self._cursor is None:
            raise BroadcastChannelError(
                f"The subscription to {self.topic!r} has no position before it starts."
            )
        return self._cursor

    def _delivered(self, message: Message | None) -> Message | None:
        if message is not None:
            self._cursor = message.cursor
        return message

    def _after_confirmation(self, latch: Latch, confirmed: bool) -> None:
        super()._after_confirmation(latch, confirmed)
        if self._cursor is None:
            self._cursor = latch.value

    # -- the replay --------------------------------------------------------------------

    def _apply(
        self, history: StreamHistory, held_drops: int, read: tuple[list[Message], bool]
    ) -> None:
        messages, lost = read
        if self._closed:
            return
        if not history.checked:
            history.checked = True
            if lost:
                self._inbox.mark_gap()
        self._page.extend(messages)
        if messages:
            history.after = position_of(messages[-1])
        if len(messages) < REPLAY_PAGE and self._holding_inbox.hand_over(history.after, held_drops):
            self._history = None

    def _replayed(self) -> Message | None:
        """The next replayed message; None once the live messages have taken over."""
        while not self._page:
            history = self._history
            if history is None or self._closed:
                return None
            held_drops = self._holding_inbox.held_drops
            self._apply(history, held_drops, history.read())
        return self._page.popleft()

    async def _areplayed(self) -> Message | None:
        while not self._page:
            history = self._history
            if history is None or self._closed:
                return None
            held_drops = self._holding_inbox.held_drops
            self._apply(history, held_drops, await asyncio.to_thread(history.read))
        return self._page.popleft()

    # -- what the shared API draws from -------------------------------------------------

    def _next(self, timeout: float | None) -> Message | None:
        check_timeout(timeout)
        self._start()
        message = self._replayed()
        return self._delivered(self._inbox.get(timeout) if message is None else message)

    async def _anext(self, timeout: float | None) -> Message | None:
        check_timeout(timeout)
        await self._astart()
        message = await self._areplayed()
        return self._delivered(await self._inbox.aget(timeout) if message is None else message)

    def _iterate(self) -> Iterator[Message]:
        try:
            self._start()
            while (message := self._replayed()) is not None:
                yield self._delivered(message) or message
        except SubscriptionClosedError:
            return
        for message in super()._iterate():
            yield self._delivered(message) or message

    async def _aiterate(self) -> AsyncIterator[Message]:
        try:
            await self._astart()
            while (message := await self._areplayed()) is not None:
                yield self._delivered(message) or message
        except SubscriptionClosedError:
            return
        async for message in super()._aiterate():
            yield self._delivered(message) or message

    # -- public ------------------------------------------------------------------------

    def receive_with_cursor(self, timeout: float | None = 0.1) -> Message | None:
        return self._next(timeout)

    async def areceive_with_cursor(self, timeout: float | None = 0.1) -> Message | None:
        return await self._anext(timeout)
