"""ASGI entry point: ``uvicorn testproject.asgi:application``.

``with_streams`` serves the stream URLs that carry a token (``stream_url()``) on the
event loop, and ends open streams when the server is told to stop. Static files are
served here, DEBUG or not, so that the demo runs the same under any server; a real
site serves them from collectstatic's output instead. ``ASGIStaticFilesHandler``
reads a file before answering, so no synchronous iterator reaches the event loop.
"""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from broadcast_app.asgi import with_streams

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

application = with_streams(ASGIStaticFilesHandler(get_asgi_application()))
