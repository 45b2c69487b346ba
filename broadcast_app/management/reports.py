"""What a command says when a channel fails it: the problem the channel reported last,
with the channel's passwords taken out."""

from __future__ import annotations

import logging
import types
from typing import Self
from urllib.parse import urlsplit

from ..conf import InvalidChannelBackendError, channel_entry

#: The logger on which the backends report connection problems.
CHANNEL_LOGGER = "broadcast_app"


class ReportedProblems(logging.Filter):
    """While entered, keeps the message of the last warning or error on CHANNEL_LOGGER.

    Records pass on unchanged to whatever handles them. Thread-safe: reader threads log.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.last = record.getMessage()
        return True

    def __enter__(self) -> Self:
        logging.getLogger(CHANNEL_LOGGER).addFilter(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        logging.getLogger(CHANNEL_LOGGER).removeFilter(self)


def _settings_of(alias: str) -> tuple[list[str], dict[str, object]]:
    """The LOCATION URLs and the OPTIONS of ``alias``; empty when they are unusable."""
    try:
        entry = channel_entry(alias)
    except InvalidChannelBackendError:
        return [], {}
    if not isinstance(entry, dict):
        return [], {}
    location = entry.get("LOCATION")
    urls = [location] if isinstance(location, str) else location
    options = entry.get("OPTIONS")
    return (
        [url for url in urls if isinstance(url, str)] if isinstance(urls, list | tuple) else [],
        options if isinstance(options, dict) else {},
    )


def channel_secrets(alias: str) -> list[str]:
    """Return the passwords in the settings of ``alias``: of its LOCATION URLs and a
    ``password`` option. Empty when the alias or its entry is unusable."""
    urls, options = _settings_of(alias)
    secrets: list[object] = []
    for url in urls:
        try:
            secrets.append(urlsplit(url).password)
        except ValueError:
            continue  # The checks report a malformed LOCATION.
    secrets.append(options.get("password"))
    return [secret for secret in secrets if isinstance(secret, str) and secret]


def channel_addresses(alias: str) -> list[str]:
    """Return where the channel ``alias`` connects: ``host:port`` (or a socket path) of
    each LOCATION URL, never its credentials. Empty when there is no usable LOCATION."""
    addresses = []
    for url in _settings_of(alias)[0]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            continue
        if parts.scheme == "unix":
            addresses.append(parts.path)
        elif parts.hostname:
            addresses.append(f"{parts.hostname}:{port or 6379}")
    return addresses


def redact(text: str, secrets: list[str]) -> str:
    """Return ``text`` with each of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
