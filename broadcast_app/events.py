"""Named JSON events: ``send_event(topic, data, event="progress")``.

``data`` is encoded with Django's ``DjangoJSONEncoder`` (dates, decimals, UUIDs,
lazy strings) and published as the named event ``event``; the stream view sends it
to the browser as an SSE event of that name whose ``data`` is the JSON text. With
``event=None`` it is a plain message whose payload is the JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .conf import DEFAULT_CHANNEL_ALIAS, get_channel


def encode_event_data(data: Any) -> bytes:
    """Return ``data`` as compact JSON text in UTF-8.

    Raises:
        TypeError: ``data`` holds something JSON cannot encode.
        ValueError: ``data`` holds a circular reference or a float that JSON lacks.
    """
    text = json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), allow_nan=False)
    return text.encode()


def send_event(
    topic: str, data: Any, *, event: str | None = None, channel: str = DEFAULT_CHANNEL_ALIAS
) -> None:
    """Publish ``data`` as JSON to ``topic`` of the channel ``channel``, as the event
    ``event`` (None: a plain ``message``). Blocks on one round trip to the backend.

    Raises:
        TypeError, ValueError: ``data`` cannot be JSON-encoded, or the topic or event
            name is unusable (nothing is sent).
        InvalidChannelBackendError: ``channel`` is not configured.
        PublishError: the backend could not accept the message.
    """
    payload = encode_event_data(data)
    get_channel(channel).topic(topic).publish(payload, event=event)


async def asend_event(
    topic: str, data: Any, *, event: str | None = None, channel: str = DEFAULT_CHANNEL_ALIAS
) -> None:
    """Async twin of ``send_event()``."""
    payload = encode_event_data(data)
    await get_channel(channel).topic(topic).apublish(payload, event=event)
