"""The SSE framing: what a WHATWG parser (the browser's EventSource) rebuilds from it."""

from __future__ import annotations

import base64

import pytest

from broadcast_app import sse

from .django_fixtures import Event, SSEParser, parse_events

TEXT_PAYLOADS = [
    "",
    "hello",
    "two\nlines",
    "trailing newline\n",
    "\n\nleading blank lines",
    " leading space and :colons: data: x",
    "event: not-a-field\nid: 7\nretry: 1",
    "nul \x00 and unicode é ✓ \u2028 𝄞",
    '{"step": 1, "percent": 10}',
]


@pytest.mark.parametrize("text", TEXT_PAYLOADS)
def test_utf8_payload_without_cr_is_a_message_event_rebuilt_exactly(text: str) -> None:
    assert parse_events(sse.payload_event(text.encode())) == [Event(text)]


@pytest.mark.parametrize(
    "payload", [b"\xff\xfe", b"ok then \xc3", b"windows\r\nline", b"old mac\rline", b"\r"]
)
def test_other_payloads_are_binary_events_carrying_base64(payload: bytes) -> None:
    (event,) = parse_events(sse.payload_event(payload))
    assert event.type == "binary"
    assert base64.b64decode(event.data, validate=True) == payload


def test_line_breaks_of_every_kind_start_a_new_data_line() -> None:
    framed = sse.event("a\r\nb\rc\nd")
    assert framed == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert parse_events(framed) == [Event("a\nb\nc\nd")]


def test_field_values_cannot_inject_fields() -> None:
    framed = sse.event("x", name="gap\r\ndata: injected\x00")
    assert parse_events(framed) == [Event("x", "gapdata: injected")]
    assert sse.comment("a\nb") == b": ab\n\n"


def test_keep_alive_gap_and_retry_frames() -> None:
    parser = SSEParser()
    events = parser.feed(sse.retry(2.5) + sse.KEEP_ALIVE + sse.GAP + sse.payload_event(b"m"))
    assert parser.retry == 2500
    assert parser.comments == ["keep-alive"]
    assert events == [Event("", "gap"), Event("m")]


def test_events_survive_arbitrary_chunk_boundaries() -> None:
    stream = b"".join(sse.payload_event(p.encode()) for p in TEXT_PAYLOADS)
    parser = SSEParser()
    events = [
        event for byte in range(len(stream)) for event in parser.feed(stream[byte : byte + 1])
    ]
    assert events == [Event(text) for text in TEXT_PAYLOADS]
