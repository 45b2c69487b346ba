"""ASGI entry point: ``uvicorn testproject.asgi:application``.

Static files are served here, DEBUG or not, so that the demo runs the same under any
server; a real site serves them from collectstatic's output instead.
``ASGIStaticFilesHandler`` reads a file before answering, so no synchronous iterator
reaches the event loop.
"""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

application = ASGIStaticFilesHandler(get_asgi_application())
