"""Pages of stream entries are bounded in bytes, not only in entries: the reader's XREAD
replies and a replay's XRANGE pages hold no more than PAGE_BYTES of entries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from broadcast_app.backends import _stream_scripts
from localservers import RedisServer

from .waiting import WAIT

if TYPE_CHECKING:
    from .conftest import ChannelFactory

ENTRY = 64 * 1024
ENTRIES = 40
PAGE = 4 * ENTRY
#: XADDs the entries in one step, so the reader finds them all at once.
ADD_ALL = """
for i = 1, tonumber(ARGV[2]) do
  redis.call('XADD', KEYS[1], '*', 'data', string.rep('x', tonumber(ARGV[1])))
end
"""


@pytest.fixture(params=["streams", "streams-resp2"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stream_scripts, "PAGE_BYTES", PAGE)


def add_all(server: RedisServer, key: str) -> None:
    server._admin_client().eval(ADD_ALL, 1, key, ENTRY, ENTRIES)


def test_the_reader_reads_a_burst_of_large_entries_in_pages(
    channel_factory: ChannelFactory, restartable_redis: RedisServer, small_pages: None
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server, max_payload_bytes=ENTRY)
    name = channel_factory.topic_name()
    with channel.topic(name).subscribe() as sub:
        reads = server.command_calls("xread")
        add_all(server, name)
        got = [sub.receive(WAIT) for _ in range(ENTRIES)]
        assert got == [b"x" * ENTRY] * ENTRIES
        # Each read brings at most PAGE bytes of entries: one or two reads are not enough.
        assert server.command_calls("xread") - reads >= ENTRIES * ENTRY // PAGE


def test_a_replay_reads_large_entries_in_pages(
    channel_factory: ChannelFactory, restartable_redis: RedisServer, small_pages: None
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server, max_payload_bytes=ENTRY)
    name = channel_factory.topic_name()
    add_all(server, name)
    pages = server.command_calls("xrange")
    with channel.topic(name).subscribe(cursor="0-0") as sub:
        got = [sub.receive(WAIT) for _ in range(ENTRIES)]
    assert got == [b"x" * ENTRY] * ENTRIES
    assert server.command_calls("xrange") - pages >= ENTRIES * ENTRY // PAGE


def test_small_entries_are_still_read_many_at_a_time(
    channel_factory: ChannelFactory, restartable_redis: RedisServer, small_pages: None
) -> None:
    server = restartable_redis
    channel = channel_factory(server=server, max_payload_bytes=1024)
    name = channel_factory.topic_name()
    topic = channel.topic(name)
    for number in range(600):
        topic.publish(b"%d" % number)
    pages = server.command_calls("xrange")
    with topic.subscribe(cursor="0-0") as sub:
        got = [sub.receive(WAIT) for _ in range(600)]
    assert got == [b"%d" % number for number in range(600)]
    # 256 entries of up to 1 KiB per page: three pages, the last one short.
    assert server.command_calls("xrange") - pages == 3
