"""In-process backend: for development, tests and single-process deployments.

Messages never leave the process: a Celery worker or another web process cannot
reach its subscribers. Publishing delivers synchronously to every local inbox.
"""

from __future__ import annotations

from ..channel import ChannelFeatures
from . import _envelope
from ._hub import Hub, Upstream
from ._inbox import Latch
from .base import BaseBroadcastChannel

_CONFIRMED = Latch(is_set=True)


class _LocalUpstream(Upstream):
    """Nothing upstream: every topic is confirmed at once."""

    def listen(self, topic: str) -> Latch:
        return _CONFIRMED

    def confirmation(self, topic: str) -> Latch:
        return _CONFIRMED

    def unlisten(self, topic: str) -> None:
        pass

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class InMemoryBroadcastChannel(BaseBroadcastChannel):
    """A broadcast channel whose topics live in this process's memory."""

    features = ChannelFeatures(keeps_history=False, crosses_processes=False)

    def create_upstream(self, hub: Hub) -> Upstream:
        return _LocalUpstream()

    def publish_payload(self, topic: str, payload: bytes) -> None:
        self.hub.dispatch(topic, _envelope.decode(payload))

    async def apublish_payload(self, topic: str, payload: bytes) -> None:
        self.publish_payload(topic, payload)
