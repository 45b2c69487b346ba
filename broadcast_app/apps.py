"""The app's configuration: ``apps.get_app_config("broadcast_app").channel``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed

from . import checks as broadcast_checks
from . import metrics
from .channel import BroadcastChannel
from .conf import DEFAULT_CHANNEL_ALIAS, get_channel, reset_channels


class BroadcastAppConfig(AppConfig):
    name = "broadcast_app"
    verbose_name = "Broadcast channels"

    @property
    def channel(self) -> BroadcastChannel:
        """The ``"default"`` channel, built on first use; the same object in every thread."""
        return get_channel(DEFAULT_CHANNEL_ALIAS)

    def ready(self) -> None:
        # No I/O here: channels are built, and connect, on first use.
        for check in broadcast_checks.ALL_CHECKS:
            checks.register(check, broadcast_checks.TAG)
        setting_changed.connect(reset_channels, dispatch_uid="broadcast_app.reset_channels")
        metrics.register()  # Only when prometheus_client is installed.
