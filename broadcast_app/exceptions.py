"""Exceptions raised by broadcast_app."""

from django.core.exceptions import ImproperlyConfigured


class BroadcastChannelError(Exception):
    """Base class of the errors a broadcast channel raises."""


class SubscriptionClosedError(BroadcastChannelError):
    """The subscription was closed; it delivers nothing more."""


class PublishError(BroadcastChannelError):
    """The backend could not accept a message; ``__cause__`` holds the backend's error."""


class InvalidChannelBackendError(ImproperlyConfigured):
    """``BROADCAST_CHANNELS`` names a backend that cannot be used."""
