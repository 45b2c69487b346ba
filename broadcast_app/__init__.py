"""Broadcast channels for Django: publish bytes to a topic, every live subscriber receives them."""

from .channel import BroadcastChannel, Producer, Subscriber, Subscription, Topic
from .conf import get_channel
from .exceptions import BroadcastChannelError, PublishError, SubscriptionClosedError

__all__ = [
    "BroadcastChannel",
    "BroadcastChannelError",
    "Producer",
    "PublishError",
    "Subscriber",
    "Subscription",
    "SubscriptionClosedError",
    "Topic",
    "get_channel",
]
