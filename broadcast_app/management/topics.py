"""What the topic commands share: options resolved to channels and topics, or CommandError."""

from __future__ import annotations

import argparse
from typing import cast

from django.core.management.base import BaseCommand, CommandError

from ..channel import BroadcastChannel, CursorTopic, Subscription, Topic
from ..conf import DEFAULT_CHANNEL_ALIAS, InvalidChannelBackendError, get_channel


def add_channel_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel",
        default=DEFAULT_CHANNEL_ALIAS,
        metavar="ALIAS",
        help=f"The alias in BROADCAST_CHANNELS of the channel to use (default: "
        f"{DEFAULT_CHANNEL_ALIAS!r}).",
    )


def open_channel(command: BaseCommand, alias: str) -> BroadcastChannel:
    """Return the channel of ``alias``, warning on stderr if it cannot cross processes.

    Raises:
        CommandError: the alias is unknown or its settings are unusable.
    """
    try:
        channel = get_channel(alias)
    except InvalidChannelBackendError as exc:
        raise CommandError(str(exc)) from exc
    if not channel.features.crosses_processes:
        command.stderr.write(
            f"The broadcast channel {alias!r} is in-memory: it does not reach other "
            "processes. Configure a Redis channel in BROADCAST_CHANNELS to talk to them.",
            command.style.WARNING,
        )
    return channel


def get_topic(channel: BroadcastChannel, name: str) -> Topic:
    """Return the topic ``name`` of ``channel``.

    Raises:
        CommandError: the channel rejects the name.
    """
    try:
        return channel.topic(name)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def subscribe(
    channel: BroadcastChannel, topic: Topic, alias: str, since: str | None
) -> Subscription:
    """Return a new, not yet started, subscription to ``topic`` of the channel ``alias``;
    from cursor ``since`` when given. No I/O.

    Raises:
        CommandError: ``since`` is given but malformed, or the channel keeps no history.
    """
    if since is None:
        return topic.subscribe()
    if not channel.features.keeps_history:
        raise CommandError(
            f"The broadcast channel {alias!r} keeps no history to replay from --since: "
            "configure a Redis Streams channel for it."
        )
    try:
        return cast(CursorTopic, topic).subscribe(cursor=since)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def positive_count(value: str) -> int:
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
