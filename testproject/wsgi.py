"""WSGI entry point: ``gunicorn testproject.wsgi``; static files served as in asgi.py."""

import os

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

application = StaticFilesHandler(get_wsgi_application())
