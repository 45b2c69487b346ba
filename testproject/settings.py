"""Settings of the project the tests and the demo run.

Environment variables:
    REDIS_URL: a ``redis://`` URL; when set, the ``"default"`` broadcast channel is
        Redis Pub/Sub there and Celery's broker too, so a worker runs the demo's jobs.
        Else the channel is in-memory and Celery runs jobs eagerly, in the web process.
    BROADCAST_BACKEND: with REDIS_URL, the channel's backend: "pubsub" (the default,
        Redis Pub/Sub) or "streams" (Redis Streams: replay, and resume after Last-Event-ID).
    BROADCAST_STREAM_AUTHORIZER: dotted path of the stream view's authorizer
        (default: the demo's, ``testproject.demo.authorizer.can_stream``).
    DEMO_JOB_STEPS, DEMO_STEP_SECONDS: the length of a demo job (10 steps of 0.5 s).
    DEMO_CHAT_MESSAGES, DEMO_CHAT_WINDOW: chat messages a client address may publish per
        window of that many seconds (5 per 10 s).
    BROADCAST_STREAM_HEARTBEAT: seconds between keep-alives of idle streams.
    DJANGO_SECRET_KEY: the secret key. Unset, each process makes up its own: sessions and
        stream URLs then last as long as the process and are valid only there.
    DJANGO_ROOT_URLCONF: the URLconf; the tests serve "testproject.testing_urls".
    DJANGO_DEBUG: "1" turns DEBUG on.
"""

import os
import secrets
import zoneinfo
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Never a fixed default: a key published with the demo would let anyone forge a session
# cookie, and with it read every job.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "broadcast_app",
    "testproject.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # On purpose: the stream view must not be buffered by it.
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = os.environ.get("DJANGO_ROOT_URLCONF") or "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"
ASGI_APPLICATION = "testproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Sessions live in a signed cookie: no database write per request, and every process
# that shares SECRET_KEY (web servers restarted mid-stream included) reads them.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
# The demo's forms are one short field: a large body is refused before it is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024
# Served by the ASGI and WSGI entry points themselves (asgi.py, wsgi.py), DEBUG or not.
STATIC_URL = "static/"


def local_time_zone() -> str:
    """Return the machine's IANA time zone (TZ, else where /etc/localtime points), or UTC.

    Django sets the process's TZ from TIME_ZONE, so log lines (a Celery worker's too)
    show this zone; its default, America/Chicago, would put them hours off.
    """
    name = os.environ.get("TZ", "").removeprefix(":")
    if not name:
        parts = Path("/etc/localtime").resolve().parts
        name = "/".join(parts[parts.index("zoneinfo") + 1 :]) if "zoneinfo" in parts else "UTC"
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return "UTC"
    return name


TIME_ZONE = local_time_zone()
USE_TZ = True

REDIS_URL = os.environ.get("REDIS_URL", "")
# Lower case: helpers, not settings.
redis_backends = {
    "pubsub": "broadcast_app.backends.redis.RedisBroadcastChannel",
    "streams": "broadcast_app.backends.streams.StreamsBroadcastChannel",
}
redis_backend = os.environ.get("BROADCAST_BACKEND") or "pubsub"
if redis_backend not in redis_backends:
    raise ValueError(f"BROADCAST_BACKEND must be one of {sorted(redis_backends)}.")
# A stream keeps every message it is not told to forget: bound the chat's history.
redis_options = {"maxlen": 1000} if redis_backend == "streams" else {}
if REDIS_URL:
    BROADCAST_CHANNELS = {
        "default": {
            "BACKEND": redis_backends[redis_backend],
            "LOCATION": REDIS_URL,
            "OPTIONS": redis_options,
        },
    }
else:
    BROADCAST_CHANNELS = {
        "default": {"BACKEND": "broadcast_app.backends.memory.InMemoryBroadcastChannel"},
    }

BROADCAST_STREAM_AUTHORIZER = (
    os.environ.get("BROADCAST_STREAM_AUTHORIZER") or "testproject.demo.authorizer.can_stream"
)
BROADCAST_STREAM_HEARTBEAT = float(os.environ.get("BROADCAST_STREAM_HEARTBEAT", "15"))

# Celery (testproject/celery.py reads the CELERY_ settings). Without Redis the tasks run
# eagerly; the demo then starts each in a thread so the request that enqueues it returns.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_IGNORE_RESULT = True  # Progress travels over the broadcast channel.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

DEMO_JOB_STEPS = int(os.environ.get("DEMO_JOB_STEPS", "10"))
DEMO_STEP_SECONDS = float(os.environ.get("DEMO_STEP_SECONDS", "0.5"))
DEMO_CHAT_MESSAGES = int(os.environ.get("DEMO_CHAT_MESSAGES", "5"))
DEMO_CHAT_WINDOW = float(os.environ.get("DEMO_CHAT_WINDOW", "10"))

# Errors and the app's own warnings reach the console even with DEBUG off.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR"},
        "broadcast_app": {"handlers": ["console"], "level": "WARNING"},
    },
}
