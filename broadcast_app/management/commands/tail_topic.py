"""``manage.py tail_topic``: print the messages of topics as they arrive."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...channel import Subscription
from ...exceptions import BroadcastChannelError, SubscriptionClosedError
from ..reports import ReportedProblems, channel_secrets, redact
from ..terminal import terminal_payload, terminal_text
from ..topics import (
    add_channel_argument,
    get_topic,
    open_channel,
    positive_count,
    positive_seconds,
    subscribe,
)


class _Delivery(NamedTuple):
    topic: str
    payload: bytes
    #: None on a channel without cursors.
    cursor: str | None
    #: The name of a named event; None for a plain message.
    event: str | None
    received_at: datetime
    #: The subscription's gaps so far.
    gaps: int


#: What the forwarders queue: a message; an error that ends the command; None when a
#: subscription ended.
_Item = _Delivery | BroadcastChannelError | None


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
            type=positive_count,
            metavar="N",
            help="Stop after N messages, counted over all topics.",
        )
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            metavar="SECONDS",
            help="Stop after that many seconds (fractions allowed), even if the "
            "subscriptions could not start by then (an error).",
        )
        parser.add_argument(
            "--since",
            metavar="CURSOR",
            help="First print the retained messages published after CURSOR (the cursor of "
            "a message, as --format json shows it; 0-0 for all), then the live ones. Needs "
            "a channel that keeps history, such as Redis Streams.",
        )
        parser.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="text: the payload as UTF-8, after <name> for a named event, prefixed "
            "with [topic] when several topics are tailed; control characters, line breaks, "
            "bidi controls and backslashes are escaped (\\x1b, \\n, \\u202e, \\\\), "
            "and bytes that are not UTF-8 show as \\xNN; json: one object per line (ASCII) "
            "with topic, payload, encoding ('utf-8' or 'base64'), event for a named event, "
            "received_at, and cursor on channels that keep history.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["channel"]
        channel = open_channel(self, alias)
        names = list(dict.fromkeys(options["topics"]))
        # Not started yet: a failed check here leaves nothing to close.
        subscriptions = [
            subscribe(channel, get_topic(channel, name), alias, options["since"]) for name in names
        ]
        self.as_json = options["format"] == "json"
        self.prefix = len(names) > 1
        self.verbosity: int = options["verbosity"]
        problems = ReportedProblems()
        try:
            with _ctrl_c_interrupts(), problems:
                asyncio.run(self.tail(subscriptions, options["count"], options["timeout"]))
        except KeyboardInterrupt:
            return  # Ctrl-C is the normal way to stop.
        except BrokenPipeError:
            _discard_stdout()  # The reader went away (``| head``): a normal end too.
        except _NotStarted as exc:
            reported = f" The channel reported: {problems.last}" if problems.last else ""
            raise CommandError(redact(f"{exc}{reported}", channel_secrets(alias))) from exc
        except BroadcastChannelError as exc:
            raise CommandError(redact(str(exc), channel_secrets(alias))) from exc
        finally:
            for subscription in subscriptions:
                subscription.close()  # Idempotent; also ends one cancelled while starting.

    async def tail(
        self, subscriptions: list[Subscription], count: int | None, timeout: float | None
    ) -> None:
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        # handle() closes the subscriptions, also one whose start was cut short.
        async with contextlib.AsyncExitStack() as stack:
            for subscription in subscriptions:
                try:
                    async with asyncio.timeout_at(deadline):
                        await stack.enter_async_context(subscription)
                except TimeoutError:
                    raise _NotStarted(
                        f"Could not subscribe to {subscription.topic!r} within {timeout:g} s."
                    ) from None
                except BroadcastChannelError as exc:
                    raise _NotStarted(
                        f"Could not subscribe to {subscription.topic!r}: {exc}"
                    ) from exc
            if self.verbosity >= 1:
                names = ", ".join(repr(subscription.topic) for subscription in subscriptions)
                self.stderr.write(f"Tailing {names}; press Ctrl-C to stop.", self.style.NOTICE)
            deliveries: asyncio.Queue[_Item] = asyncio.Queue()
            forwarders = [
                asyncio.create_task(_forward(subscription, deliveries))
                for subscription in subscriptions
            ]
            stack.push_async_callback(_cancel, forwarders)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self.print_deliveries(deliveries, count, len(forwarders))

    async def print_deliveries(
        self, deliveries: asyncio.Queue[_Item], count: int | None, live: int
    ) -> None:
        printed = 0
        gaps: dict[str, int] = {}
        while live and (count is None or printed < count):
            delivery = await deliveries.get()
            if delivery is None:
                live -= 1
                continue
            if isinstance(delivery, BroadcastChannelError):
                raise delivery
            if delivery.gaps != gaps.setdefault(delivery.topic, 0):
                gaps[delivery.topic] = delivery.gaps
                self.stderr.write(
                    f"Messages of {delivery.topic!r} may have been missed here.",
                    self.style.WARNING,
                )
            self.stdout.write(self.format(delivery))
            self.stdout.flush()
            printed += 1

    def format(self, delivery: _Delivery) -> str:
        topic, payload = delivery.topic, delivery.payload
        if self.as_json:
            try:
                record = {"topic": topic, "payload": payload.decode(), "encoding": "utf-8"}
            except UnicodeDecodeError:
                encoded = base64.b64encode(payload).decode("ascii")
                record = {"topic": topic, "payload": encoded, "encoding": "base64"}
            if delivery.event is not None:
                record["event"] = delivery.event
            record["received_at"] = delivery.received_at.isoformat()
            if delivery.cursor is not None:
                record["cursor"] = delivery.cursor
            return json.dumps(record)
        text = terminal_payload(payload)
        if delivery.event is not None:
            text = f"<{terminal_text(delivery.event)}> {text}"
        return f"[{terminal_text(topic)}] {text}" if self.prefix else text


async def _forward(subscription: Subscription, deliveries: asyncio.Queue[_Item]) -> None:
    """Queue what ``subscription`` receives, with its cursor where the channel has them."""
    try:
        while True:
            message = await subscription.areceive_message(timeout=None)
            if message is not None:
                deliveries.put_nowait(
                    _Delivery(
                        subscription.topic,
                        message.payload,
                        message.cursor,
                        message.event,
                        datetime.now(UTC),
                        subscription.gaps,
                    )
                )
    except SubscriptionClosedError:
        pass
    except BroadcastChannelError as exc:  # A replay could not read Redis.
        deliveries.put_nowait(exc)
    finally:
        deliveries.put_nowait(None)


class _NotStarted(BroadcastChannelError):
    """A subscription could not start; the message names its topic."""


@contextlib.contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """Make SIGINT raise KeyboardInterrupt while the command runs, even if the process
    inherited it ignored (a background job, nohup, some CI): it is how tailing stops."""
    if threading.current_thread() is not threading.main_thread():
        yield  # call_command() from a thread: signals are the main thread's business.
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not set from Python, cannot be restored.
            signal.signal(signal.SIGINT, previous)


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
