"""The stream URLs the clients open, from the benchmark server's own settings."""

from __future__ import annotations

import os
import secrets

#: The one topic every stream of the benchmark and the soak reads.
TOPIC = "bench-streams"
#: Served by ``bench.sse.app`` itself: an open event stream that sends nothing.
FLOOR_PATH = "/bench/floor"


def configure() -> str:
    """Choose the benchmark's settings and a fresh SECRET_KEY for this run (servers
    started afterwards inherit both); return the key."""
    secret_key = secrets.token_urlsafe(40)
    os.environ.update(DJANGO_SECRET_KEY=secret_key, DJANGO_SETTINGS_MODULE="bench.sse.settings")
    return secret_key


def stream_paths() -> dict[str, str]:
    """The view's URL, the fast path's (``stream_url``: the view's plus a token) and
    uvicorn's floor.

    Call ``configure()`` first: the token is signed with its key.
    """
    # Django is set up here, once the settings module is chosen.
    import django  # noqa: PLC0415

    django.setup()
    from django.urls import reverse  # noqa: PLC0415

    from broadcast_app.tokens import stream_url  # noqa: PLC0415

    return {
        "view": reverse("broadcast_app:stream", kwargs={"topic": TOPIC}),
        "fast": stream_url(TOPIC),
        "floor": FLOOR_PATH,
    }
