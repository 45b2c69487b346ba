"""``manage.py publish_topic``: publish a message, or each line of standard input, to a topic."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import PublishError
from ..topics import add_channel_argument, get_topic, open_channel


class Command(BaseCommand):
    help = "Publish MESSAGE to TOPIC, or each line of standard input when MESSAGE is omitted or -."
    requires_system_checks: list[str] = []
    # call_command(..., stdin=stream) reads from stream instead of sys.stdin.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("topic", metavar="TOPIC", help="The name of the topic.")
        parser.add_argument(
            "message",
            nargs="?",
            metavar="MESSAGE",
            help="The message, sent as UTF-8. Omit it, or give -, to publish each line of "
            "standard input as one message (without its line ending).",
        )
        add_channel_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        channel = open_channel(self, options["channel"])
        topic = get_topic(channel, options["topic"])
        message: str | None = options["message"]
        if message is None or message == "-":
            payloads: Iterable[bytes] = _lines(options.get("stdin") or sys.stdin.buffer)
        else:
            # fsencode() gives back the exact bytes of the command-line argument.
            payloads = [os.fsencode(message)]
        published = 0
        try:
            for payload in payloads:
                topic.publish(payload)
                published += 1
        except PublishError as exc:
            raise CommandError(
                f"Publishing to {topic.name!r} failed after {published} message(s): {exc}"
            ) from exc
        except KeyboardInterrupt:
            pass  # Ctrl-C ends reading standard input; report what was sent.
        if options["verbosity"] >= 1:
            self.stdout.write(f"Published {published} message(s) to {topic.name!r}.")


def _lines(stream: IO[bytes] | IO[str]) -> Iterator[bytes]:
    """Yield each line of ``stream`` as bytes, without its line ending (LF or CRLF)."""
    for line in stream:
        data = line.encode() if isinstance(line, str) else line
        if data.endswith(b"\r\n"):
            yield data[:-2]
        elif data.endswith(b"\n"):
            yield data[:-1]
        else:
            yield data
