"""Exceptions raised by broadcast channels. Imports no Django: settings errors belong
to ``broadcast_app.conf``."""


class BroadcastChannelError(Exception):
    """Base class of the errors a broadcast channel raises."""


class SubscriptionClosedError(BroadcastChannelError):
    """The subscription was closed; it delivers nothing more."""


class PublishError(BroadcastChannelError):
    """The backend could not accept a message; ``__cause__`` holds the backend's error."""


class PayloadTooLargeError(PublishError, ValueError):
    """A payload is longer than the channel's ``max_payload_bytes``; nothing was sent.

    A ``ValueError`` too: the caller's input is at fault, and retrying cannot help.
    """
