"""Text made safe for a terminal: what a publisher sends is shown, never obeyed.

Anyone who may publish to a topic controls its payloads, and topic names may hold any
printable character, so both are escaped before they reach an operator's terminal.
"""

from __future__ import annotations

import re

# C0, DEL and C1 (ESC, CSI, OSC... start terminal commands), the backslash (so that an
# escape is never ambiguous), Unicode line breaks and bidi controls (which reorder what
# is shown), and the surrogates ``surrogateescape`` makes of bytes that are not UTF-8.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\\\\\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\udc80-\udcff]"
)
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # A byte that is not UTF-8.
    if code < 0x80:
        return f"\\x{code:02x}"
    # \u, not \x: a C1 control (U+0080 to U+009F) never looks like an undecodable byte.
    return f"\\u{code:04x}"


def terminal_text(text: str) -> str:
    """Return ``text`` with every character that could act on a terminal escaped.

    Escapes: ``\\\\``, ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` for other ASCII controls,
    ``\\uNNNN`` for C1 controls, Unicode line breaks and bidi controls. The result is
    one line of printable characters, and distinct texts stay distinct.
    """
    return _UNSAFE.sub(_escape, text)


def terminal_payload(payload: bytes) -> str:
    """Return ``payload`` read as UTF-8 and escaped like ``terminal_text()``; each byte
    that is not part of valid UTF-8 shows as ``\\xNN``."""
    return terminal_text(payload.decode("utf-8", "surrogateescape"))
