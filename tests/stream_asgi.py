"""The test project's ASGI application behind the stream fast path (``with_streams``)."""

import os

from django.core.asgi import get_asgi_application

from broadcast_app.asgi import with_streams

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.stream_settings")

application = with_streams(get_asgi_application())
