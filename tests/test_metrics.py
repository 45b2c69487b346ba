"""``channel.stats()`` on every backend, and the Prometheus collector over it."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from broadcast_app import get_channel, metrics

from .waiting import WAIT, wait_until

MEMORY = {"BACKEND": "broadcast_app.backends.memory.InMemoryBroadcastChannel"}


def test_stats_count_what_happens_on_the_channel(channel, topic_name):
    topic = channel.topic(topic_name)
    assert channel.stats() == {
        "subscriptions": 0,
        "messages_published_total": 0,
        "messages_delivered_total": 0,
        "messages_dropped_total": 0,
        "gaps_total": 0,
        "reconnects_total": 0,
    }
    with topic.subscribe() as first, topic.subscribe(buffer_bytes=1) as second:
        assert channel.stats()["subscriptions"] == 2
        topic.publish(b"a")
        topic.publish(b"b")
        assert first.receive(WAIT) == b"a"
        assert first.receive(WAIT) == b"b"
        assert second.receive(WAIT) == b"b"  # "a" was dropped to make room.
        stats = channel.stats()
    assert stats["messages_published_total"] == 2
    assert stats["messages_delivered_total"] == 4
    assert stats["messages_dropped_total"] == 1
    assert stats["gaps_total"] == 1
    assert channel.stats()["subscriptions"] == 0


@pytest.mark.parametrize("backend", ["redis-resp3", "streams"])
def test_a_reconnect_is_counted(channel_factory, restartable_redis, topic_name):
    channel = channel_factory(server=restartable_redis)
    with channel.topic(topic_name).subscribe() as sub:
        restartable_redis.kill()
        restartable_redis.restart()
        assert wait_until(lambda: channel.stats()["reconnects_total"] == 1, WAIT)
        channel.topic(topic_name).publish(b"after")
        assert sub.receive(WAIT) == b"after"
        assert channel.stats()["reconnects_total"] == 1


def test_the_collector_exports_every_channel_by_alias(settings: Any):
    settings.BROADCAST_CHANNELS = {"default": MEMORY, "other": MEMORY}
    registry = CollectorRegistry()
    assert metrics.register(registry)
    assert metrics.register(registry)  # Once only: a second call changes nothing.
    with get_channel().topic("jobs").subscribe() as sub:
        get_channel().topic("jobs").publish(b"x")
        assert sub.receive(WAIT) == b"x"
        get_channel("other").topic("jobs").publish(b"y")
        text = generate_latest(registry).decode()
    samples = {
        (sample.name, sample.labels["channel"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("broadcast_app_subscriptions", "default")] == 1
    assert samples[("broadcast_app_streams", "default")] == 0
    assert samples[("broadcast_app_messages_published_total", "default")] == 1
    assert samples[("broadcast_app_messages_delivered_total", "default")] == 1
    assert samples[("broadcast_app_messages_published_total", "other")] == 1
    assert samples[("broadcast_app_messages_dropped_total", "other")] == 0
    assert samples[("broadcast_app_gaps_total", "default")] == 0
    assert samples[("broadcast_app_reconnects_total", "default")] == 0
