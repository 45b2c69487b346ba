"""The ASGI application the benchmark serves: testproject behind the stream fast path.

Requests to a stream URL carrying ``?token=`` take the fast path; all others (the
Django view included) reach Django's ASGI handler.
"""

import os
from typing import cast

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.sse.settings")

from broadcast_app.asgi import ASGIApp, with_streams  # Once the settings are chosen.

application = with_streams(cast(ASGIApp, get_asgi_application()))
