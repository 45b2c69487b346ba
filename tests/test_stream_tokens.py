"""Signed stream tokens, URL topics and the stream settings, in-process: ``tokens``, the
``{% stream_url %}`` tag, and the view's rules under Django's WSGI and ASGI test clients.
The same rules over a real uvicorn, fast path included, are in test_stream_fast_path.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from django.core.checks import run_checks
from django.template import engines
from django.test import AsyncClient, Client, override_settings
from django.urls import reverse

from broadcast_app import metrics, tokens
from broadcast_app.views import BroadcastStreamView

MEMORY = {"BACKEND": "broadcast_app.backends.memory.InMemoryBroadcastChannel"}
OLD_KEY = "an-older-secret-key-" + "o" * 40


@pytest.fixture(autouse=True)
def memory_settings(settings: Any) -> Any:
    """In-memory channels; the authorizer allows only ``public:`` topics."""
    settings.BROADCAST_CHANNELS = {"default": MEMORY, "other": MEMORY}
    settings.BROADCAST_STREAM_AUTHORIZER = "tests.django_fixtures.allow_public"
    settings.BROADCAST_STREAM_HEARTBEAT = 0.05
    return settings


def answer(client: Client, path: str, **extra: Any) -> tuple[int, str]:
    """Status and, for a refusal, its text; a stream is closed at once."""
    response = client.get(path, **extra)
    try:
        text = "" if response.streaming else response.content.decode()
        return response.status_code, text
    finally:
        response.close()


def expired_url(topic: str) -> str:
    real_time = time.time
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: real_time() - 7200)
        return tokens.stream_url(topic, expires_in=60)


def test_stream_url_is_the_reversed_url_with_a_token() -> None:
    url = tokens.stream_url("private:room/1")
    path, _, query = url.partition("?")
    assert path == reverse("broadcast_app:stream", kwargs={"topic": "private:room/1"})
    assert query.startswith("token=")
    assert "&" not in query
    tokens.check_stream_token(query.removeprefix("token="), "private:room/1")


def test_template_tag_renders_a_signed_url() -> None:
    template = engines["django"].from_string(
        "{% load broadcast %}{% stream_url topic expires_in=60 %}|{% stream_url 'x' as u %}{{ u }}"
    )
    first, second = template.render({"topic": "private:a b"}).split("|")
    assert first.startswith("/broadcast/private:a%20b?token=")
    assert second.startswith("/broadcast/x?token=")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"expires_in": 0}, ValueError),
        ({"expires_in": float("inf")}, ValueError),
        ({"expires_in": "60"}, TypeError),
        ({"expires_in": True}, TypeError),
    ],
)
def test_bad_expiry_is_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        tokens.stream_token("topic", **kwargs)


@pytest.mark.parametrize("topic", [".", "..", "a/../b", "a/./b", "a//b", "/a", "a/", "100%", ""])
def test_topics_a_url_cannot_carry_get_no_url(topic: str) -> None:
    with pytest.raises(ValueError, match=r"URL|empty"):
        tokens.stream_url(topic)


def test_unknown_channel_alias_gets_no_token() -> None:
    with pytest.raises(Exception, match="'nope' doesn't exist"):
        tokens.stream_token("topic", channel="nope")


def tampered(url: str) -> str:
    last = url[-1]
    return url[:-1] + ("A" if last != "A" else "B")


def other_topic(url: str) -> str:
    token = url.partition("?")[2]
    return reverse("broadcast_app:stream", kwargs={"topic": "private:other"}) + "?" + token


TOKEN_CASES = {
    # name: (url builder, status, reason in the answer)
    "valid": (lambda: tokens.stream_url("private:x"), 200, ""),
    "tampered": (lambda: tampered(tokens.stream_url("private:x")), 403, "not valid"),
    "expired": (lambda: expired_url("private:x"), 403, "expired"),
    "other topic": (lambda: other_topic(tokens.stream_url("private:x")), 403, "not valid"),
    "other channel": (lambda: tokens.stream_url("private:x", channel="other"), 403, "not valid"),
    "garbage": (lambda: "/broadcast/private:x?token=%00%FF", 403, "not valid"),
    "empty": (lambda: "/broadcast/private:x?token=", 403, "not valid"),
    # A refused token never falls back to the authorizer, which allows public: topics.
    "tampered, public": (lambda: tampered(tokens.stream_url("public:x")), 403, "not valid"),
    "no token, refused": (lambda: "/broadcast/private:x", 403, "may not stream"),
    "no token, allowed": (lambda: "/broadcast/public:x", 200, ""),
}


@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_token_rules_under_wsgi(client: Client, case: str) -> None:
    build, status, reason = TOKEN_CASES[case]
    code, text = answer(client, build())
    assert code == status
    assert reason in text


@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_token_rules_under_asgi(case: str) -> None:
    build, status, reason = TOKEN_CASES[case]

    async def scenario() -> None:
        response = await AsyncClient().get(build())
        if response.streaming:
            await response.streaming_content.aclose()  # type: ignore[union-attr]
            response.close()
        else:
            assert reason in response.content.decode()
        assert response.status_code == status

    asyncio.run(scenario())


def test_tokens_signed_with_a_fallback_key_stay_valid(client: Client, settings: Any) -> None:
    with override_settings(SECRET_KEY=OLD_KEY):
        url = tokens.stream_url("private:x")
    assert answer(client, url)[0] == 403
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]
    assert answer(client, url)[0] == 200


def test_a_token_for_the_view_channel_alias(rf: Any) -> None:
    view = BroadcastStreamView.as_view(channel_alias="other")
    for alias, status in (("other", 200), ("default", 403)):
        url = tokens.stream_url("private:x", channel=alias)
        response = view(rf.get(url), topic="private:x")
        assert response.status_code == status
        response.close()


def test_a_token_needs_no_authorizer_at_all(client: Client, settings: Any) -> None:
    settings.BROADCAST_STREAM_AUTHORIZER = None
    assert answer(client, tokens.stream_url("private:x"))[0] == 200
    assert answer(client, "/broadcast/private:x")[0] == 403


@pytest.mark.parametrize("with_token", [False, True])
def test_post_to_a_stream_url_is_405_not_a_csrf_403(with_token: bool) -> None:
    client = Client(enforce_csrf_checks=True)
    url = tokens.stream_url("public:x") if with_token else "/broadcast/public:x"
    response = client.post(url)
    assert response.status_code == 405
    assert response["Allow"] == "GET, OPTIONS"


@pytest.mark.parametrize(
    "path",
    ["/broadcast/.", "/broadcast/..", "/broadcast/public:a/../b", "/broadcast/public:a//b",
     "/broadcast/public:a/", "/broadcast/public:100%25", "/broadcast/public:a%FFb"],
)  # fmt: skip
def test_url_topics_browsers_would_rewrite_are_400(client: Client, path: str) -> None:
    assert answer(client, path)[0] == 400


def test_topics_with_single_slashes_stream(client: Client) -> None:
    assert answer(client, "/broadcast/public:jobs/42/log")[0] == 200


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("BROADCAST_STREAM_BUFFER_BYTES", 0, "broadcast_app.E020"),
        ("BROADCAST_STREAM_BUFFER_BYTES", "1MB", "broadcast_app.E020"),
        ("BROADCAST_STREAM_MAX_STREAMS", -1, "broadcast_app.E021"),
        ("BROADCAST_STREAM_MAX_STREAMS", 1.5, "broadcast_app.E021"),
        ("BROADCAST_STREAM_SLOW_CLIENT", "block", "broadcast_app.E022"),
        ("BROADCAST_STREAM_STALL_TIMEOUT", 0, "broadcast_app.E022"),
        ("BROADCAST_STREAM_STALL_TIMEOUT", float("nan"), "broadcast_app.E022"),
    ],
)
def test_bad_stream_settings_are_check_errors(
    settings: Any, setting: str, value: object, check_id: str
) -> None:
    setattr(settings, setting, value)
    errors = [message for message in run_checks() if message.id.startswith("broadcast_app.E")]
    assert [message.id for message in errors] == [check_id]
    assert repr(value) in errors[0].msg


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("BROADCAST_STREAM_BUFFER_BYTES", None),
        ("BROADCAST_STREAM_BUFFER_BYTES", 65536),
        ("BROADCAST_STREAM_MAX_STREAMS", None),
        ("BROADCAST_STREAM_MAX_STREAMS", 20000),
        ("BROADCAST_STREAM_SLOW_CLIENT", "disconnect"),
        ("BROADCAST_STREAM_STALL_TIMEOUT", 2.5),
    ],
)
def test_good_stream_settings_pass(settings: Any, setting: str, value: object) -> None:
    setattr(settings, setting, value)
    assert [m.id for m in run_checks() if m.id.startswith("broadcast_app.E")] == []


def test_open_streams_are_counted_per_channel_for_the_metrics(client: Client, rf: Any) -> None:
    first = client.get("/broadcast/public:x")
    other = BroadcastStreamView.as_view(channel_alias="other")(rf.get("/"), topic="public:x")
    try:
        assert (metrics.open_streams("default"), metrics.open_streams("other")) == (1, 1)
    finally:
        first.close()
        other.close()
    assert (metrics.open_streams("default"), metrics.open_streams("other")) == (0, 0)
