"""Signed stream tokens: a page authorizes a stream when it renders the stream's URL.

``stream_url(topic)`` is the topic's stream URL with a ``token`` query parameter. The
stream (the view under WSGI or ASGI, and the ASGI fast path of ``broadcast_app.asgi``)
accepts a token valid for exactly its topic and channel alias without asking the
authorizer: whoever rendered the page already decided. A token that is tampered with,
expired, or minted for another topic or channel gets 403 and never falls back to the
authorizer; a request without a token is authorized as before.

A token is ``<expiry>.<signature>``: the expiry (Unix seconds, base 62) in clear, and an
HMAC (Django's ``Signer``, salted for this use) over the channel alias, the topic and
the expiry. The topic is not repeated in the token; the URL carries it. Signing uses
``SECRET_KEY`` and verification also accepts ``SECRET_KEY_FALLBACKS``, so keys rotate
as Django's own signatures do. Tokens are bearer credentials until they expire: keep
``expires_in`` to the time a page needs to connect (reconnections reuse the URL, so not
much shorter than a visit either).
"""

from __future__ import annotations

import json
import math
import time

from django.core import signing
from django.urls import reverse
from django.utils.http import urlencode

from .conf import DEFAULT_CHANNEL_ALIAS, get_channel
from .topic_urls import check_url_topic

#: The query parameter carrying a token.
QUERY_PARAMETER = "token"
#: Seconds a token stays valid unless told otherwise.
DEFAULT_EXPIRES_IN = 3600

_SALT = "broadcast_app.tokens.stream"
_SEPARATOR = "."

INVALID_MESSAGE = "The stream token is not valid for this stream.\n"
EXPIRED_MESSAGE = "The stream token has expired.\n"


class StreamTokenError(ValueError):
    """A token does not authorize a stream; its message is the short reason for the 403."""


def _is_base62(text: str) -> bool:
    return text.isascii() and text.isalnum()


def _signed_value(topic: str, channel: str, expiry: int) -> str:
    # JSON keeps the fields apart whatever characters the topic holds.
    return json.dumps([channel, topic, expiry], ensure_ascii=False)


def stream_token(
    topic: str, *, expires_in: float = DEFAULT_EXPIRES_IN, channel: str = DEFAULT_CHANNEL_ALIAS
) -> str:
    """Return a token authorizing streams of ``topic`` on ``channel`` for ``expires_in`` s.

    Raises:
        TypeError, ValueError: ``topic`` is not a valid topic name of the channel or
            cannot travel in a URL, or ``expires_in`` is not a positive number.
        InvalidChannelBackendError: ``channel`` is not a configured alias.
    """
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise TypeError(f"expires_in must be a number of seconds, not {expires_in!r}.")
    if not 0 < expires_in < math.inf:
        raise ValueError(f"expires_in must be a positive number of seconds, not {expires_in!r}.")
    get_channel(channel).topic(topic)  # Validates the name; no I/O.
    check_url_topic(topic)
    expiry = math.ceil(time.time() + expires_in)
    signature = signing.Signer(salt=_SALT).signature(_signed_value(topic, channel, expiry))
    return f"{signing.b62_encode(expiry)}{_SEPARATOR}{signature}"


def stream_url(
    topic: str, *, expires_in: float = DEFAULT_EXPIRES_IN, channel: str = DEFAULT_CHANNEL_ALIAS
) -> str:
    """Return ``reverse("broadcast_app:stream", kwargs={"topic": topic})`` plus ``?token=``.

    Raises:
        what ``stream_token()`` raises, and NoReverseMatch if the app's URLs are not
        included.
    """
    token = stream_token(topic, expires_in=expires_in, channel=channel)
    url = reverse("broadcast_app:stream", kwargs={"topic": topic})
    return f"{url}?{urlencode({QUERY_PARAMETER: token})}"


def check_stream_token(token: str, topic: str, *, channel: str = DEFAULT_CHANNEL_ALIAS) -> None:
    """Return if ``token`` authorizes streams of ``topic`` on ``channel`` now.

    Raises:
        StreamTokenError: it does not (malformed, tampered, other topic or channel, expired).
    """
    expiry_text, separator, signature = token.partition(_SEPARATOR)
    # Base 62 digits only, and few: anything else is not ours (b62_decode is lenient).
    if not (separator and 0 < len(expiry_text) <= 12 and _is_base62(expiry_text)):
        raise StreamTokenError(INVALID_MESSAGE)
    expiry = signing.b62_decode(expiry_text)
    signer = signing.Signer(salt=_SALT)
    try:
        signer.unsign(f"{_signed_value(topic, channel, expiry)}{signer.sep}{signature}")
    except signing.BadSignature:
        raise StreamTokenError(INVALID_MESSAGE) from None
    if time.time() >= expiry:
        raise StreamTokenError(EXPIRED_MESSAGE)
