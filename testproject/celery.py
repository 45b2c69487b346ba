"""The Celery app of the test and demo project: ``celery -A testproject worker``.

Configured from the Django settings under the ``CELERY_`` prefix, so broker and
channel follow the same ``REDIS_URL``: with it set, tasks go through Redis to a
worker; without it, Celery runs them eagerly, in the process that enqueues them.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

app = Celery("testproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
