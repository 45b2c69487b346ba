"""``manage.py tail_topic``: print the messages of topics as they arrive."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...backends.base import BaseBroadcastChannel
from ...backends.subscription import ChannelSubscription
from ...exceptions import BroadcastChannelError
from ..topics import add_channel_argument, get_topic, open_channel, positive_int, positive_seconds

#: (topic, payload, received at, gaps of the subscription so far); None: a subscription ended.
_Delivery = tuple[str, bytes, datetime, int] | None


class Command(BaseCommand):
    help = (
        "Print the messages published to one or more topics as they arrive, one per line, "
        "until Ctrl-C, --count or --timeout."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "topics", nargs="+", metavar="TOPIC", help="The name of a topic to print."
        )
        add_channel_argument(parser)
        parser.add_argument(
            "--count",
            type=positive_int,
            metavar="N",
            help="Stop after N messages, counted over all topics.",
        )
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            metavar="SECONDS",
            help="Stop after that many seconds (fractions allowed).",
        )
        parser.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="text: the payload as UTF-8 (undecodable bytes escaped), prefixed with "
            "[topic] when several topics are tailed; json: one object per line with topic, "
            "payload, encoding ('utf-8' or 'base64') and received_at.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        channel = open_channel(self, options["channel"])
        names = list(dict.fromkeys(options["topics"]))
        for name in names:
            get_topic(channel, name)
        self.as_json = options["format"] == "json"
        self.prefix = len(names) > 1
        self.verbosity: int = options["verbosity"]
        try:
            asyncio.run(self.tail(channel, names, options["count"], options["timeout"]))
        except KeyboardInterrupt:
            return  # Ctrl-C is the normal way to stop; the subscriptions are closed.
        except BrokenPipeError:
            _discard_stdout()  # The reader went away (``| head``): a normal end too.
        except BroadcastChannelError as exc:
            raise CommandError(str(exc)) from exc

    async def tail(
        self,
        channel: BaseBroadcastChannel,
        names: list[str],
        count: int | None,
        timeout: float | None,
    ) -> None:
        deliveries: asyncio.Queue[_Delivery] = asyncio.Queue()
        async with contextlib.AsyncExitStack() as stack:
            subscriptions = [channel.topic(name).subscribe() for name in names]
            for subscription in subscriptions:
                await stack.enter_async_context(subscription)
            if self.verbosity >= 1:
                self.stderr.write(
                    f"Tailing {', '.join(map(repr, names))}; press Ctrl-C to stop.",
                    self.style.NOTICE,
                )
            forwarders = [
                asyncio.create_task(_forward(subscription, deliveries))
                for subscription in subscriptions
            ]
            stack.push_async_callback(_cancel, forwarders)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.print_deliveries(deliveries, count, len(forwarders))

    async def print_deliveries(
        self, deliveries: asyncio.Queue[_Delivery], count: int | None, live: int
    ) -> None:
        printed = 0
        gaps: dict[str, int] = {}
        while live and (count is None or printed < count):
            delivery = await deliveries.get()
            if delivery is None:
                live -= 1
                continue
            topic, payload, received_at, seen_gaps = delivery
            if seen_gaps != gaps.setdefault(topic, 0):
                gaps[topic] = seen_gaps
                self.stderr.write(
                    f"Messages of {topic!r} may have been missed here.", self.style.WARNING
                )
            self.stdout.write(self.format(topic, payload, received_at))
            self.stdout.flush()
            printed += 1

    def format(self, topic: str, payload: bytes, received_at: datetime) -> str:
        if self.as_json:
            try:
                record = {"topic": topic, "payload": payload.decode(), "encoding": "utf-8"}
            except UnicodeDecodeError:
                encoded = base64.b64encode(payload).decode("ascii")
                record = {"topic": topic, "payload": encoded, "encoding": "base64"}
            record["received_at"] = received_at.isoformat()
            return json.dumps(record)
        text = payload.decode("utf-8", "backslashreplace")
        return f"[{topic}] {text}" if self.prefix else text


async def _forward(subscription: ChannelSubscription, deliveries: asyncio.Queue[_Delivery]) -> None:
    try:
        async for payload in subscription:
            received_at = datetime.now(UTC)
            deliveries.put_nowait((subscription.topic, payload, received_at, subscription.gaps))
    finally:
        deliveries.put_nowait(None)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _discard_stdout() -> None:
    # Python flushes stdout at exit; a closed pipe would make that print an error.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
