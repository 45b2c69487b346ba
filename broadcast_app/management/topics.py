"""What the topic commands share: options resolved to channels and topics, or CommandError."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from ..backends.base import BaseBroadcastChannel, ChannelTopic
from ..backends.cursors import CursorTopic
from ..backends.memory import InMemoryBroadcastChannel
from ..backends.subscription import ChannelSubscription
from ..conf import DEFAULT_CHANNEL_ALIAS, get_channel
from ..exceptions import InvalidChannelBackendError


def add_channel_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel",
        default=DEFAULT_CHANNEL_ALIAS,
        metavar="ALIAS",
        help=f"The alias in BROADCAST_CHANNELS of the channel to use (default: "
        f"{DEFAULT_CHANNEL_ALIAS!r}).",
    )


def open_channel(command: BaseCommand, alias: str) -> BaseBroadcastChannel:
    """Return the channel of ``alias``, warning on stderr if it cannot cross processes.

    Raises:
        CommandError: the alias is unknown or its settings are unusable.
    """
    try:
        channel = get_channel(alias)
    except InvalidChannelBackendError as exc:
        raise CommandError(str(exc)) from exc
    if isinstance(channel, InMemoryBroadcastChannel):
        command.stderr.write(
            f"The broadcast channel {alias!r} is in-memory: it does not reach other "
            "processes. Configure a Redis channel in BROADCAST_CHANNELS to talk to them.",
            command.style.WARNING,
        )
    return channel


def get_topic(channel: BaseBroadcastChannel, name: str) -> ChannelTopic:
    """Return the topic ``name`` of ``channel``.

    Raises:
        CommandError: the channel rejects the name.
    """
    try:
        return channel.topic(name)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def subscribe(topic: ChannelTopic, alias: str, since: str | None) -> ChannelSubscription:
    """Return a new, not yet started, subscription to ``topic`` of the channel ``alias``;
    from cursor ``since`` when given. No I/O.

    Raises:
        CommandError: ``since`` is given but malformed, or the channel keeps no history.
    """
    if since is None:
        return topic.subscribe()
    if not isinstance(topic, CursorTopic):
        raise CommandError(
            f"The broadcast channel {alias!r} keeps no history to replay from --since: "
            "configure a Redis Streams channel for it."
        )
    try:
        return topic.subscribe(cursor=since)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def positive_int(value: str) -> int:
    """argparse type: an integer above zero."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def positive_seconds(value: str) -> float:
    """argparse type: a finite number of seconds above zero."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number
