"""Template tags: ``{% load broadcast %}``, then ``{% stream_url topic %}``.

``{% stream_url topic expires_in=600 channel="other" %}`` takes the keyword arguments
of ``broadcast_app.tokens.stream_url()``; ``{% stream_url topic as url %}`` stores it.
"""

from __future__ import annotations

from django import template

from .. import tokens
from ..conf import DEFAULT_CHANNEL_ALIAS

register = template.Library()


@register.simple_tag(name="stream_url")
def stream_url_tag(
    topic: str,
    expires_in: float = tokens.DEFAULT_EXPIRES_IN,
    channel: str = DEFAULT_CHANNEL_ALIAS,
) -> str:
    """The signed stream URL of ``topic`` (see ``broadcast_app.tokens.stream_url``)."""
    return tokens.stream_url(topic, expires_in=expires_in, channel=channel)
