"""What ``BROADCAST_CHANNELS`` asks of a BACKEND: a class with ``features`` and
``from_settings()``, whatever it derives from. The face decides by the features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core import checks
from django.test import override_settings

from broadcast_app import BroadcastChannel, ChannelFeatures, get_channel
from broadcast_app.backends.memory import InMemoryBroadcastChannel

from .waiting import WAIT

PATH = f"{__name__}.DelegatingBackend"


class DelegatingBackend:
    """A backend of its own: no engine class among its bases. Its channels are in-memory
    channels, and it says so."""

    features = ChannelFeatures(keeps_history=False, crosses_processes=False)
    built: list[tuple[str | Sequence[str] | None, Mapping[str, Any]]] = []

    @classmethod
    def from_settings(
        cls, location: str | Sequence[str] | None, options: Mapping[str, Any]
    ) -> BroadcastChannel:
        cls.built.append((location, options))
        return InMemoryBroadcastChannel(**options)


def test_a_class_with_features_and_from_settings_is_a_backend() -> None:
    entry = {"BACKEND": PATH, "OPTIONS": {"buffer_size": 4}}
    with override_settings(BROADCAST_CHANNELS={"default": entry}):
        channel = get_channel()
        assert DelegatingBackend.built[-1] == (None, {"buffer_size": 4})
        topic = channel.topic("delegated")
        with topic.subscribe() as subscription:
            topic.publish(b"through a backend of its own")
            assert subscription.receive(WAIT) == b"through a backend of its own"


def test_the_checks_read_the_backend_features() -> None:
    entry = {"BACKEND": PATH}
    settings = {
        "DEBUG": False,
        "BROADCAST_STREAM_AUTHORIZER": "tests.django_fixtures.allow_all",
        "BROADCAST_CHANNELS": {"default": entry},
    }
    with override_settings(**settings):
        ids = [message.id for message in checks.run_checks(tags=["broadcast_app"])]
    assert ids == ["broadcast_app.W001"]
