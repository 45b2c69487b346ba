"""pytest fixtures for projects that use broadcast_app, registered through the
``pytest11`` entry point. Needs a configured Django (pytest-django or your own setup).

- ``broadcast_channel``: every alias of ``BROADCAST_CHANNELS`` (and ``"default"``)
  becomes an in-memory channel of its own for the test; the test gets the default one.
  Nothing reaches Redis, and nothing leaks between tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .channel import BroadcastChannel

MEMORY_BACKEND = "broadcast_app.backends.memory.InMemoryBroadcastChannel"


@pytest.fixture
def broadcast_channel() -> Iterator[BroadcastChannel]:
    """The ``"default"`` channel, in memory and private to this test."""
    from django.conf import settings  # noqa: PLC0415 (the plugin loads before Django is set up)
    from django.test import override_settings  # noqa: PLC0415

    from .conf import DEFAULT_CHANNEL_ALIAS, get_channel  # noqa: PLC0415

    aliases = set(getattr(settings, "BROADCAST_CHANNELS", None) or ()) | {DEFAULT_CHANNEL_ALIAS}
    channels = {alias: {"BACKEND": MEMORY_BACKEND} for alias in aliases}
    # Changing the setting closes the channels built so far, and again on the way out.
    with override_settings(BROADCAST_CHANNELS=channels):
        yield get_channel(DEFAULT_CHANNEL_ALIAS)
