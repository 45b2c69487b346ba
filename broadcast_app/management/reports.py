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


def channel_secrets(alias: str) -> list[str]:
    """Return the passwords in the settings of ``alias``: of its LOCATION URLs and a
    ``password`` option. Empty when the alias or its entry is unusable."""
    try:
        entry = channel_entry(alias)
    except InvalidChannelBackendError:
        return []
    if not isinstance(entry, dict):
        return []
    location = entry.get("LOCATION")
    urls = [location] if isinstance(location, str) else location
    secrets = []
    if isinstance(urls, list | tuple):
        for url in urls:
            try:
                secrets.append(urlsplit(url).password)
            except (TypeError, ValueError, AttributeError):
                continue  # The checks report a malformed LOCATION.
    options = entry.get("OPTIONS")
    if isinstance(options, dict):
        secrets.append(options.get("password"))
    return [secret for secret in secrets if isinstance(secret, str) and secret]


def redact(text: str, secrets: list[str]) -> str:
    """Return ``text`` with each of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
