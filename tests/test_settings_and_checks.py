"""BROADCAST_CHANNELS becomes channels (one per alias per process), and the system checks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import include, path

from broadcast_app import get_channel
from broadcast_app.apps import BroadcastAppConfig
from broadcast_app.backends.memory import InMemoryBroadcastChannel
from broadcast_app.backends.redis import RedisBroadcastChannel
from broadcast_app.conf import InvalidChannelBackendError
from broadcast_app.exceptions import SubscriptionClosedError
from broadcast_app.views import BroadcastStreamView
from localservers import RedisServer

from .django_fixtures import MEMORY, REDIS, ROOT, allow_all

AUTHORIZER = "tests.django_fixtures.allow_all"


def check_ids(**settings: Any) -> list[str]:
    """The ids of the app's check messages under ``settings`` (default: DEBUG, an authorizer)."""
    settings = {"DEBUG": True, "BROADCAST_STREAM_AUTHORIZER": AUTHORIZER, **settings}
    with override_settings(**settings):
        messages = checks.run_checks(tags=["broadcast_app"])
    return [message.id for message in messages if message.id]


# -- Channels from settings -----------------------------------------------------------------


def test_without_the_setting_default_is_an_in_memory_channel(settings: Any) -> None:
    del settings.BROADCAST_CHANNELS
    assert isinstance(get_channel(), InMemoryBroadcastChannel)
    assert get_channel("default") is get_channel()


@override_settings(BROADCAST_CHANNELS={"default": {"BACKEND": MEMORY}})
def test_one_channel_per_alias_for_every_thread() -> None:
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def look() -> None:
        barrier.wait()
        seen.append(get_channel())

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert all(channel is seen[0] for channel in seen)
    config = apps.get_app_config("broadcast_app")
    assert isinstance(config, BroadcastAppConfig)
    assert config.channel is seen[0]


@override_settings(BROADCAST_CHANNELS={"default": {"BACKEND": MEMORY}})
def test_unknown_alias_names_it() -> None:
    with pytest.raises(InvalidChannelBackendError) as raised:
        get_channel("foo")
    assert str(raised.value) == "The broadcast channel alias 'foo' doesn't exist."


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"BACKEND": "no.such.Backend"},
            "Could not import broadcast channel backend 'no.such.Backend'",
        ),
        ({"BACKEND": "collections.OrderedDict"}, "'collections.OrderedDict' is not a broadcast"),
        ({}, "BROADCAST_CHANNELS['default'] has no BACKEND"),
        ({"BACKEND": MEMORY, "LOCATON": "x"}, "unknown keys ['LOCATON']"),
        ({"BACKEND": MEMORY, "LOCATION": "redis://x"}, "takes no LOCATION"),
        ({"BACKEND": MEMORY, "OPTIONS": {"buffer_size": 0}}, "buffer_size must be a positive"),
        ({"BACKEND": REDIS}, "needs a LOCATION"),
        ({"BACKEND": REDIS, "LOCATION": "http://example.com"}, "Redis URL must specify"),
    ],
)
def test_unusable_entries_raise_an_error_saying_why(entry: dict[str, Any], message: str) -> None:
    with (
        override_settings(BROADCAST_CHANNELS={"default": entry}),
        pytest.raises(InvalidChannelBackendError) as raised,
    ):
        get_channel()
    assert message in str(raised.value)


def test_redis_entry_is_built_without_connecting(restartable_redis: RedisServer) -> None:
    # Counts connections: on a server of its own.
    server = restartable_redis
    before = server.connected_clients()
    entry = {
        "BACKEND": REDIS,
        "LOCATION": server.url,
        "OPTIONS": {"buffer_size": 7, "socket_timeout": 3.5, "health_check_interval": 12},
    }
    with override_settings(BROADCAST_CHANNELS={"default": entry}):
        channel = get_channel()
        assert isinstance(channel, RedisBroadcastChannel)
        assert channel.buffer_size == 7
        assert channel.health_check_interval == 12
        assert channel.client.connection_pool.connection_kwargs["socket_timeout"] == 3.5
        assert server.connected_clients() == before


def test_override_settings_closes_the_channels_it_replaces() -> None:
    with override_settings(BROADCAST_CHANNELS={"default": {"BACKEND": MEMORY}}):
        outer = get_channel()
        subscription = outer.topic("t").subscribe()
        subscription.__enter__()
        with override_settings(BROADCAST_CHANNELS={"default": {"BACKEND": MEMORY}}):
            inner = get_channel()
            assert inner is not outer
            with pytest.raises(SubscriptionClosedError):  # Entering closed the outer channel.
                subscription.receive(timeout=0)
        assert get_channel() is not inner  # And leaving closed the inner one.


# -- System checks --------------------------------------------------------------------------


def test_a_sound_configuration_passes(redis_server: RedisServer) -> None:
    channels = {
        "default": {"BACKEND": REDIS, "LOCATION": redis_server.url},
        "local": {"BACKEND": MEMORY, "OPTIONS": {"buffer_size": 10}},
    }
    assert check_ids(BROADCAST_CHANNELS=channels) == []


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ([], ["broadcast_app.E001"]),
        ({"default": "redis://localhost"}, ["broadcast_app.E001"]),
        ({"default": {"BACKEND": "no.such.Backend"}}, ["broadcast_app.E001"]),
        ({"default": {"BACKEND": MEMORY, "LOCATION": "redis://x"}}, ["broadcast_app.E002"]),
        ({"default": {"BACKEND": REDIS, "LOCATION": "http://x"}}, ["broadcast_app.E002"]),
        ({"default": {"BACKEND": REDIS, "LOCATION": 6379}}, ["broadcast_app.E002"]),
        ({"default": {"BACKEND": REDIS}}, ["broadcast_app.E002"]),
        (
            {
                "default": {
                    "BACKEND": REDIS,
                    "LOCATION": "redis://x",
                    "OPTIONS": {"sockettimeout": 1},
                }
            },
            ["broadcast_app.E003"],
        ),
        ({"default": {"BACKEND": MEMORY, "OPTIONS": {"buffer_size": -1}}}, ["broadcast_app.E003"]),
        ({"default": {"BACKEND": MEMORY, "OPTIONS": [1]}}, ["broadcast_app.E003"]),
        ({"other": {"BACKEND": MEMORY}}, ["broadcast_app.E004"]),
    ],
)
def test_channel_setting_errors(channels: object, expected: list[str]) -> None:
    assert check_ids(BROADCAST_CHANNELS=channels) == expected


def test_check_messages_quote_the_problem_and_hint_at_the_fix() -> None:
    channels = {"default": {"BACKEND": REDIS, "LOCATION": "http://example.com"}}
    with override_settings(
        BROADCAST_CHANNELS=channels, DEBUG=True, BROADCAST_STREAM_AUTHORIZER=AUTHORIZER
    ):
        (error,) = checks.run_checks(tags=["broadcast_app"])
    assert error.id == "broadcast_app.E002"
    assert "'default'" in error.msg
    assert "redis://" in (error.hint or "")


@pytest.mark.parametrize(
    ("authorizer", "expected"),
    [
        ("tests.django_fixtures.allow_all", []),
        ("tests.django_fixtures.no_such_function", ["broadcast_app.E005"]),
        ("tests.django_fixtures.ROOT", ["broadcast_app.E005"]),
    ],
)
def test_authorizer_setting(authorizer: str, expected: list[str]) -> None:
    assert check_ids(BROADCAST_STREAM_AUTHORIZER=authorizer) == expected


@pytest.mark.parametrize(
    ("heartbeat", "expected"),
    [(15, []), (0.25, []), (0, ["broadcast_app.E006"]), ("15", ["broadcast_app.E006"])],
)
def test_heartbeat_setting(heartbeat: object, expected: list[str]) -> None:
    assert check_ids(BROADCAST_STREAM_HEARTBEAT=heartbeat) == expected


def test_in_memory_channel_warns_only_without_debug() -> None:
    channels = {"default": {"BACKEND": MEMORY}}
    assert check_ids(BROADCAST_CHANNELS=channels, DEBUG=False) == ["broadcast_app.W001"]
    assert check_ids(BROADCAST_CHANNELS=channels, DEBUG=True) == []


urlpatterns = [
    path("own-authorizer/<str:topic>", BroadcastStreamView.as_view(authorizer=allow_all)),
]
unguarded_urlpatterns = [
    path("events/", include("broadcast_app.urls")),
]


def test_mounted_stream_view_without_authorizer_warns() -> None:
    assert check_ids(BROADCAST_STREAM_AUTHORIZER=None) == ["broadcast_app.W002"]
    with override_settings(ROOT_URLCONF=__name__):
        # A view that brings its own authorizer is fine.
        assert check_ids(BROADCAST_STREAM_AUTHORIZER=None) == []
    with override_settings(DEBUG=True, BROADCAST_STREAM_AUTHORIZER=None):
        (warning,) = checks.run_checks(tags=["broadcast_app"])
    assert "'broadcast_app:stream'" in warning.msg
    assert "BROADCAST_STREAM_AUTHORIZER" in (warning.hint or "")


def test_manage_py_check_fails_on_errors() -> None:
    channels = {"default": {"BACKEND": MEMORY, "OPTIONS": {"bufsize": 1}}}
    with override_settings(BROADCAST_CHANNELS=channels), pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert "broadcast_app.E003" in str(raised.value)


def test_startup_and_checks_connect_to_nothing(restartable_redis: RedisServer) -> None:
    admin = restartable_redis.client()
    try:
        before = admin.info("stats")["total_connections_received"]
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            check=False,
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": restartable_redis.url},
            capture_output=True,
            text=True,
            timeout=30,
        )
        after = admin.info("stats")["total_connections_received"]
    finally:
        admin.close()
    assert result.returncode == 0, result.stderr
    assert "broadcast_app.E" not in result.stdout + result.stderr
    assert after == before
