"""The demo page and its endpoints: create a job, start it, publish to the chat topic.

A job is created and started in two requests so that no event is lost: the page
creates the job, opens its stream — the stream view answers once it is subscribed —
and only then starts it. Delivery is at-most-once; whatever was published before the
subscription would be gone.
"""

from __future__ import annotations

import math
import time
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from kombu.exceptions import OperationalError

from broadcast_app import PublishError, get_channel
from broadcast_app.tokens import stream_url

from .authorizer import CHAT_TOPIC, STARTED, job_state, job_topic, remember_job
from .tasks import enqueue_job, run_job

#: Longest chat message accepted, in characters.
MAX_CHAT_MESSAGE = 500
#: Seconds after which the page says that no worker has taken a queued job yet.
WORKER_HINT_SECONDS = 5


def redis_address(url: str) -> str:
    """Return ``host:port/db`` (or the socket path) of a Redis URL, without credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def current_mode() -> dict[str, str]:
    """Describe where messages travel and where jobs run, as configured in this process;
    ``replay`` is "1" when a reconnecting stream resumes after its last event."""
    features = get_channel().features
    if not features.crosses_processes:
        name, title = "memory", "In-memory mode"
        messages = "Messages stay in this web process (in-memory channel)"
    else:
        name, title = "redis", "Redis mode"
        messages = f"Messages travel through Redis at {redis_address(settings.REDIS_URL)}"
    if run_job.app.conf.task_always_eager:
        jobs = "jobs run in a thread of this web process (Celery eager mode)."
    else:
        jobs = "jobs run on Celery workers (celery -A testproject worker)."
    replay = "1" if features.keeps_history else ""
    return {"name": name, "title": title, "detail": f"{messages}; {jobs}", "replay": replay}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {
        "mode": current_mode(),
        "chat_topic": CHAT_TOPIC,
        "max_chat_message": MAX_CHAT_MESSAGE,
        # Eager jobs start at once; queued ones wait for a worker, which may not run.
        "worker_hint_seconds": 0 if run_job.app.conf.task_always_eager else WORKER_HINT_SECONDS,
        # A stream silent for three keep-alive periods died unnoticed: reconnect.
        "idle_timeout_ms": round(settings.BROADCAST_STREAM_HEARTBEAT * 3000),
    }
    return render(request, "demo/index.html", context)


@require_POST
def new_job(request: HttpRequest) -> JsonResponse:
    """Create a job this session owns: its id, topic and URLs. Nothing runs yet.

    The stream URL carries a token: whoever holds it may follow the job for an hour.
    """
    job_id = uuid.uuid4().hex
    remember_job(request, job_id)
    topic = job_topic(job_id)
    body = {
        "id": job_id,
        "topic": topic,
        "stream": stream_url(topic),
        "start": reverse("demo:start-job", kwargs={"job_id": job_id}),
    }
    return JsonResponse(body, status=201)


@require_POST
def start_job(request: HttpRequest, job_id: str) -> JsonResponse:
    """Enqueue a job of this session, once. Open its stream first: see the module docstring.

    403 for a job of another session (or none), 409 if already started, 503 if the
    broker is unreachable.
    """
    state = job_state(request, job_id)
    if state is None:
        return JsonResponse({"error": "This job is not yours."}, status=403)
    if state == STARTED:
        return JsonResponse({"error": "This job was started already."}, status=409)
    try:
        enqueue_job(job_id, settings.DEMO_JOB_STEPS, settings.DEMO_STEP_SECONDS)
    except OperationalError as exc:
        return JsonResponse({"error": f"The job could not be queued: {exc}"}, status=503)
    remember_job(request, job_id, STARTED)
    return JsonResponse({"id": job_id, "state": STARTED}, status=202)


def chat_wait(request: HttpRequest) -> float:
    """Count a chat message of the request's client address against its rate limit:
    ``DEMO_CHAT_MESSAGES`` per fixed window of ``DEMO_CHAT_WINDOW`` seconds. Return 0 if
    it is allowed, else the seconds until the next window.

    Counted in Django's cache: per process with the default local-memory cache, site-wide
    with a shared one.
    """
    window = settings.DEMO_CHAT_WINDOW
    now = time.time()
    key = f"demo:chat:{request.META.get('REMOTE_ADDR')}:{int(now // window)}"
    cache.add(key, 0, timeout=math.ceil(window))
    if cache.incr(key) <= settings.DEMO_CHAT_MESSAGES:
        return 0.0
    return window - now % window


@require_POST
def post_chat(request: HttpRequest) -> HttpResponse:
    """Publish the form field ``message`` to the chat topic: 204, or 400/429/503 with a reason."""
    wait = chat_wait(request)
    if wait:
        return JsonResponse(
            {"error": "Too many messages: wait a few seconds."},
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )
    message = request.POST.get("message", "").strip()
    if not message or len(message) > MAX_CHAT_MESSAGE:
        return JsonResponse(
            {"error": f"Write a message of 1 to {MAX_CHAT_MESSAGE} characters."}, status=400
        )
    try:
        get_channel().topic(CHAT_TOPIC).publish(message.encode())
    except PublishError as exc:
        return JsonResponse({"error": f"The message was not published: {exc}"}, status=503)
    return HttpResponse(status=204)
