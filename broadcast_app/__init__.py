"""Broadcast channels for Django: publish bytes to a topic, every live subscriber receives them.

The protocol names load without Django; ``get_channel`` and the other Django-facing
names load on first use, so ``import broadcast_app.backends.redis`` works in a
process that has no Django.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from .channel import (
    ORIGIN,
    BroadcastChannel,
    ChannelFeatures,
    CursorSubscriber,
    CursorSubscription,
    CursorTopic,
    Message,
    Producer,
    PublishListener,
    Subscriber,
    Subscription,
    Topic,
)
from .exceptions import (
    BroadcastChannelError,
    PayloadTooLargeError,
    PublishError,
    SubscriptionClosedError,
)

if TYPE_CHECKING:
    from .conf import InvalidChannelBackendError, get_channel
    from .events import asend_event, send_event

#: Django-facing names and the module each loads from on first use.
_LAZY = {
    "get_channel": "broadcast_app.conf",
    "InvalidChannelBackendError": "broadcast_app.conf",
    "send_event": "broadcast_app.events",
    "asend_event": "broadcast_app.events",
}

__all__ = [
    "ORIGIN",
    "BroadcastChannel",
    "BroadcastChannelError",
    "ChannelFeatures",
    "CursorSubscriber",
    "CursorSubscription",
    "CursorTopic",
    "Message",
    "PayloadTooLargeError",
    "Producer",
    "PublishError",
    "PublishListener",
    "Subscriber",
    "Subscription",
    "SubscriptionClosedError",
    "Topic",
]


# Listed only where they can load, so that ``from broadcast_app import *`` works in a
# process without Django (the engine on its own).
def _django_importable() -> bool:
    try:
        return importlib.util.find_spec("django") is not None
    except ImportError:  # An import hook that refuses Django outright.
        return False


if _django_importable():
    __all__ += ["InvalidChannelBackendError", "asend_event", "get_channel", "send_event"]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
