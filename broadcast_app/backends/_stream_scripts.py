"""What the Streams backend asks Redis in Lua, and how it reads stream entries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .cursors import parse_cursor

#: KEYS[1]: the stream; ARGV: payload, expiry in ms, MAXLEN (0: none). Returns the new ID.
APPEND_SCRIPT = """
local id
if ARGV[3] == '0' then
  id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[1])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return id
"""

#: For each key: its type, then (for a stream) its last generated ID, first entry ID,
#: length, and on Redis 7+ the highest ID removed by XDEL and the count of entries ever
#: added; '' where there is none. Only IDs and counts travel, no payloads.
PROBE_SCRIPT = """
local fields = {['last-generated-id'] = 2, ['length'] = 4, ['max-deleted-entry-id'] = 5,
                ['entries-added'] = 6}
local probes = {}
for i, key in ipairs(KEYS) do
  local probe = {redis.call('TYPE', key)['ok'], '', '', '', '', ''}
  if probe[1] == 'stream' then
    local info = redis.call('XINFO', 'STREAM', key)
    for j = 1, #info, 2 do
      local name, value = info[j], info[j + 1]
      if fields[name] then
        probe[fields[name]] = tostring(value)
      elseif name == 'first-entry' and value then
        probe[3] = value[1]
      end
    end
  end
  probes[i] = probe
end
return probes
"""


#: Payload bytes a page of stream entries (an XREAD reply, an XRANGE page) stays within.
PAGE_BYTES = 8 * 1024 * 1024


def page_count(largest: int, streams: int, most: int) -> int:
    """The COUNT of the next read of ``streams`` streams whose entries are at most
    ``largest`` bytes: as many entries as keep the page within ``PAGE_BYTES``, at least
    one per stream and at most ``most``.

    A page is bounded in bytes, not only in entries: with the default
    ``max_payload_bytes`` (1 MiB), 8 entries of one stream, or one of each of 8 streams.
    """
    return max(1, min(most, PAGE_BYTES // (max(1, largest) * max(1, streams))))


def entry_size(fields: list[bytes] | dict[bytes, bytes]) -> int:
    """The bytes of a stream entry's field names and values."""
    if isinstance(fields, dict):
        return sum(len(name) + len(value) for name, value in fields.items())
    return sum(len(part) for part in fields)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Probe(NamedTuple):
    """What ``PROBE_SCRIPT`` tells of one key ('' where there is nothing to tell)."""

    kind: str
    last: str
    first: str
    length: str
    max_deleted: str
    added: str

    @classmethod
    def parse(cls, reply: Iterable[Any]) -> list[Probe]:
        return [cls(*map(text, probe)) for probe in reply]

    def may_have_lost(self, after: str, *, if_missing: bool, seen: int | None = None) -> bool:
        """Whether entries after ID ``after`` may have been removed before being read.

        ``if_missing`` is the answer for a key that does not exist (it expired or was
        never written). ``seen``, if known, is how many entries the stream had when
        ``after`` was its last: with it (on Redis 7+) a stream trimmed past ``after`` is
        a loss only if entries were added after ``after`` and trimmed too. Without it,
        any trimming past ``after`` counts as a loss.
        """
        if self.kind == "none":
            return if_missing
        if self.kind != "stream":
            return True
        position = parse_cursor(after)
        if self.max_deleted and parse_cursor(self.max_deleted) > position:
            return True  # XDEL removed an entry after it.
        if self.first and parse_cursor(self.first) <= position:
            return False  # Trimming removes the oldest entries only.
        if seen is None or not self.added:
            return True
        return int(self.added) - seen > int(self.length)


def payload_of(fields: list[bytes] | dict[bytes, bytes]) -> bytes:
    """The payload of a stream entry: its ``data`` field, else its first value."""
    if isinstance(fields, dict):
        return fields[b"data"] if b"data" in fields else next(iter(fields.values()))
    if fields[0] == b"data":
        return fields[1]
    for index in range(2, len(fields) - 1, 2):
        if fields[index] == b"data":
            return fields[index + 1]
    return fields[1]
