"""Broadcast channels for Django: publish bytes to a topic, every live subscriber receives them."""

from .channel import BroadcastChannel, Producer, Subscriber, Subscription, Topic
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
]
