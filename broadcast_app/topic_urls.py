"""Topic names as they travel in stream URLs.

A topic is the last part of the stream URL's path, ``reverse()`` quoting it. Two
things can make the topic a server sees differ from the topic a page linked to:

- Browsers and proxies rewrite paths. The WHATWG URL parser removes ``.`` and ``..``
  segments (also when written ``%2e``), so ``reverse()`` of ``a/../b`` is fetched as
  ``b``; proxies such as nginx merge ``//`` into ``/``. A topic whose ``/``-separated
  segments are all non-empty and none is ``.`` or ``..`` survives both; any other is
  refused on the URL side: ``stream_url()`` raises ValueError and the view answers 400.
  Topics with ``/`` otherwise stay allowed (``jobs/42``).
- Servers decode percent-escapes leniently: uvicorn turns an invalid UTF-8 escape such as
  ``%FF`` into U+FFFD, so ``a%FFb`` and ``a%FEb`` would reach one topic; Django's WSGI
  handler turns it back into the three characters ``%FF``, which a topic could hold
  too. So under ASGI the raw path (the scope's ``raw_path``) is decoded strictly, and
  invalid UTF-8 gets 400; and a URL topic may not contain ``%``, so under WSGI an
  escape Django put back is refused (400) rather than taken for a topic's own ``%``.

No Django imports.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

#: Why a topic cannot be carried by a URL, for the 400 answer and for ValueError.
UNSAFE_TOPIC_MESSAGE = (
    "Topic {topic!r} cannot travel in a URL: browsers and proxies rewrite empty, '.' and "
    "'..' path segments, and '%' is reserved for escapes."
)
INVALID_UTF8_MESSAGE = "The URL's path is not valid UTF-8 once percent-decoded."


def check_url_topic(topic: str) -> None:
    """Raise ValueError if browsers or proxies would rewrite ``topic``'s URL path."""
    if "%" in topic or any(segment in ("", ".", "..") for segment in topic.split("/")):
        raise ValueError(UNSAFE_TOPIC_MESSAGE.format(topic=topic))


def check_utf8(path: bytes) -> str:
    """Decode a percent-decoded path strictly as UTF-8.

    Raises:
        ValueError: it is not valid UTF-8.
    """
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(INVALID_UTF8_MESSAGE) from None


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a raw URL path (as sent, e.g. ASGI's ``raw_path``) strictly as UTF-8.

    Raises:
        ValueError: a decoded byte sequence is not valid UTF-8.
    """
    return check_utf8(unquote_to_bytes(raw_path))
