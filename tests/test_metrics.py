"""``channel.stats()`` on every backend, and the Prometheus collector over it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from broadcast_app import get_channel, metrics
from localservers import RedisServer

from .django_fixtures import MEMORY, ROOT
from .waiting import WAIT, wait_until

if TYPE_CHECKING:
    from .conftest import ChannelFactory


def test_stats_count_what_happens_on_the_channel(channel: Any, topic_name: str) -> None:
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
def test_a_reconnect_is_counted(
    channel_factory: ChannelFactory, restartable_redis: RedisServer, topic_name: str
) -> None:
    channel = channel_factory(server=restartable_redis)
    with channel.topic(topic_name).subscribe() as sub:
        restartable_redis.kill()
        restartable_redis.restart()
        assert wait_until(lambda: channel.stats()["reconnects_total"] == 1, WAIT)
        channel.topic(topic_name).publish(b"after")
        assert sub.receive(WAIT) == b"after"
        assert channel.stats()["reconnects_total"] == 1


def test_the_collector_exports_every_channel_by_alias(settings: Any) -> None:
    settings.BROADCAST_CHANNELS = {"default": {"BACKEND": MEMORY}, "other": {"BACKEND": MEMORY}}
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


PUBLISHER = """
import sys, django
django.setup()
from broadcast_app import get_channel, metrics

subscription = get_channel().topic("jobs").subscribe().__enter__()
for _ in range(int(sys.argv[1])):
    get_channel().topic("jobs").publish(b"x")
metrics._mirror.copy()
print("copied", flush=True)
sys.stdin.read()
"""


def test_multi_process_mode_sums_the_processes(tmp_path: Path) -> None:
    """Two processes in prometheus_client's multi-process mode: a scrape sums them."""
    environ = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": str(ROOT),
    }
    environ.pop("REDIS_URL", None)
    publishers = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(count)],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for count in (3, 4)
    ]
    try:
        for publisher in publishers:
            assert publisher.stdout is not None
            assert publisher.stdout.readline().strip() == "copied"
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
        samples = {
            (sample.name, sample.labels.get("channel")): sample.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples
        }
    finally:
        for publisher in publishers:
            publisher.communicate(timeout=WAIT)
    assert samples[("broadcast_app_messages_published_total", "default")] == 7
    assert samples[("broadcast_app_messages_delivered_total", "default")] == 7
    assert samples[("broadcast_app_subscriptions", "default")] == 2
