"""System checks catch at start-up what would otherwise fail at the first publish: option
types, misspelt or misplaced options, a database that is not a number, and the settings a
mounted stream view brings itself."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings
from django.urls import path

from broadcast_app.views import BroadcastStreamView

from .django_fixtures import allow_all

MEMORY = "broadcast_app.backends.memory.InMemoryBroadcastChannel"
PUBSUB = "broadcast_app.backends.redis.RedisBroadcastChannel"
SHARDED = "broadcast_app.backends.sharded.ShardedRedisBroadcastChannel"
STREAMS = "broadcast_app.backends.streams.StreamsBroadcastChannel"
REDIS_BACKENDS = [PUBSUB, SHARDED, STREAMS]
#: Nothing listens there: the checks never connect.
URL = "redis://:s3cret@127.0.0.1:9/0"


def check_messages(channels: object, **settings: Any) -> list[checks.CheckMessage]:
    settings = {"DEBUG": True, "BROADCAST_STREAM_AUTHORIZER": "tests.django_fixtures.allow_all"}
    with override_settings(BROADCAST_CHANNELS=channels, **settings):
        return checks.run_checks(tags=["broadcast_app"])


def only_error(channels: object) -> checks.CheckMessage:
    (message,) = check_messages(channels)
    assert "s3cret" not in message.msg
    return message


@pytest.mark.parametrize("backend", REDIS_BACKENDS)
@pytest.mark.parametrize(
    ("options", "quoted"),
    [
        ({"socket_timeout": "abc"}, "socket_timeout must be a number of seconds, not 'abc'"),
        ({"socket_connect_timeout": math.nan}, "socket_connect_timeout must be a positive"),
        ({"socket_timeout": math.inf}, "socket_timeout must be a positive, finite"),
        ({"socket_timeout": 0}, "socket_timeout must be a positive"),
        ({"health_check_interval": "30"}, "health_check_interval must be a positive"),
        ({"socket_keepalive": "yes"}, "socket_keepalive must be True or False, not 'yes'"),
        ({"retry_on_timeout": 1}, "retry_on_timeout must be True or False"),
        ({"protocol": 4}, "protocol must be 2 (RESP2) or 3 (RESP3)"),
        ({"password": 1234}, "password must be a str"),
    ],
)
def test_redis_option_values_are_checked(
    backend: str, options: dict[str, Any], quoted: str
) -> None:
    # Without a password in the URL: the URL's would take precedence over the option.
    location = "redis://127.0.0.1:9/0"
    error = only_error({"default": {"BACKEND": backend, "LOCATION": location, "OPTIONS": options}})
    assert error.id == "broadcast_app.E003"
    assert quoted in error.msg


@pytest.mark.parametrize("backend", REDIS_BACKENDS)
def test_option_values_in_the_url_are_checked_too(backend: str) -> None:
    location = "redis://127.0.0.1:9/0?socket_timeout=nan"
    error = only_error({"default": {"BACKEND": backend, "LOCATION": location}})
    assert error.id == "broadcast_app.E002"  # The LOCATION is to blame.
    assert "socket_timeout must be a positive, finite number of seconds, not nan" in error.msg


@pytest.mark.parametrize("backend", REDIS_BACKENDS)
def test_sound_redis_options_pass(backend: str) -> None:
    options = {
        "socket_timeout": 2,
        "socket_connect_timeout": 0.5,
        "socket_keepalive": False,
        "protocol": 3,
        "username": "app",
        "password": "s3cret",
        "buffer_size": 10,
    }
    assert (
        check_messages({"default": {"BACKEND": backend, "LOCATION": URL, "OPTIONS": options}}) == []
    )


@pytest.mark.parametrize(
    ("backend", "option", "advice"),
    [
        (PUBSUB, "sockettimeout", "did you mean 'socket_timeout'?"),
        (SHARDED, "socket_timout", "did you mean 'socket_timeout'?"),
        (STREAMS, "retention_second", "did you mean 'retention_seconds'?"),
        (MEMORY, "bufsize", "did you mean 'buffer_size'?"),
        (PUBSUB, "retention_seconds", "only StreamsBroadcastChannel takes it"),
        (SHARDED, "maxlen", "only StreamsBroadcastChannel takes it"),
        (MEMORY, "socket_timeout", "an option of the Redis client"),
    ],
)
def test_a_misspelt_or_misplaced_option_gets_advice(backend: str, option: str, advice: str) -> None:
    location = None if backend == MEMORY else URL
    entry = {"BACKEND": backend, "LOCATION": location, "OPTIONS": {option: 1}}
    error = only_error({"default": entry})
    assert error.id == "broadcast_app.E003"
    assert f"takes no option {option!r}" in error.msg
    assert advice in error.msg


@pytest.mark.parametrize("backend", REDIS_BACKENDS)
@pytest.mark.parametrize("database", ["abc", "-1", "0x1", "1.5"])
def test_a_database_that_is_not_a_number_is_refused(backend: str, database: str) -> None:
    # redis-py would ignore such a path and use database 0: another app's data.
    location = f"redis://:s3cret@127.0.0.1:9/{database}"
    error = only_error({"default": {"BACKEND": backend, "LOCATION": location}})
    assert error.id == "broadcast_app.E002"
    assert f"database number, as in redis://host:6379/0, not {database!r}" in error.msg


@pytest.mark.parametrize("backend", [PUBSUB, STREAMS])
@pytest.mark.parametrize(
    "location", ["redis://127.0.0.1:9", "redis://127.0.0.1:9/", "redis://h/15"]
)
def test_a_numbered_or_absent_database_passes(backend: str, location: str) -> None:
    assert check_messages({"default": {"BACKEND": backend, "LOCATION": location}}) == []


# -- What a mounted view brings itself -------------------------------------------------------


class AliasedView(BroadcastStreamView):
    channel_alias = "missing-by-subclass"


urlpatterns = [
    path("ok/<str:topic>", BroadcastStreamView.as_view(authorizer=allow_all), name="ok"),
    path(
        "other/<str:topic>",
        BroadcastStreamView.as_view(channel_alias="other", authorizer=allow_all),
        name="other",
    ),
    path("typo/<str:topic>", BroadcastStreamView.as_view(authorizer="tests.nowhere.allow")),
    path(
        "not-callable/<str:topic>",
        BroadcastStreamView.as_view(authorizer="tests.django_fixtures.ROOT"),
    ),
    path("alias/<str:topic>", BroadcastStreamView.as_view(channel_alias="nope"), name="alias"),
    path("subclass/<str:topic>", AliasedView.as_view()),
]


@override_settings(ROOT_URLCONF=__name__)
def test_a_mounted_views_own_authorizer_and_channel_alias_are_checked() -> None:
    channels = {"default": {"BACKEND": MEMORY}, "other": {"BACKEND": MEMORY}}
    errors = check_messages(channels)
    assert [error.id for error in errors] == ["broadcast_app.E007"] * 4
    typo, not_callable, alias, subclass = (error.msg for error in errors)
    assert "The broadcast stream view at '/typo/<str:topic>': authorizer" in typo
    assert "'tests.nowhere.allow' cannot be imported" in typo
    assert "is not callable" in not_callable
    assert "view 'alias' at '/'" in alias
    assert "channel alias 'nope', which BROADCAST_CHANNELS does not have" in alias
    assert "'missing-by-subclass'" in subclass
    assert "channel_alias" in (errors[2].hint or "")
