"""The test project's ASGI application behind the stream fast path (``with_streams``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.stream_settings")
django_application = get_asgi_application()

from broadcast_app.asgi import with_streams  # noqa: E402  (after Django is set up)

application = with_streams(django_application)
