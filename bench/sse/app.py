"""The ASGI application the benchmark serves: testproject behind the stream fast path.

Requests to a stream URL carrying ``?token=`` take the fast path; all others (the
Django view included) reach Django's ASGI handler. Until ``broadcast_app.asgi`` exists,
``bench.sse.standin`` plays the fast path so that the harness can be run.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.sse.settings")

try:
    from broadcast_app.asgi import with_streams

    FAST_PATH = "broadcast_app.asgi.with_streams"
except ImportError:
    from .standin import with_streams

    FAST_PATH = "bench.sse.standin (stand-in: broadcast_app.asgi is missing)"

application = with_streams(get_asgi_application())
