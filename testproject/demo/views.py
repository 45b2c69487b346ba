"""The demo page and its endpoints: create a job, start it, publish to the chat topic.

A job is created and started in two requests so that no event is lost: the page
creates the job, opens its stream — the stream view answers once it is subscribed —
and only then starts it. Delivery is at-most-once; whatever was published before the
subscription would be gone.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from kombu.exceptions import OperationalError

from broadcast_app import PublishError, get_channel
from broadcast_app.backends.memory import InMemoryBroadcastChannel

from .authorizer import CHAT_TOPIC, STARTED, job_state, job_topic, remember_job
from .tasks import enqueue_job, run_job

#: Longest chat message accepted, in characters.
MAX_CHAT_MESSAGE = 500


def stream_url(topic: str) -> str:
    return reverse("broadcast_app:stream", kwargs={"topic": topic})


def redis_address(channel: object) -> str:
    """Return ``host:port/db`` (or the socket path) of a Redis channel's client."""
    client = getattr(channel, "client", None)
    if client is None:
        return type(channel).__name__
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        return str(options["path"])
    return f"{options['host']}:{options['port']}/{options.get('db', 0)}"


def current_mode() -> dict[str, str]:
    """Describe where messages travel and where jobs run, as configured in this process."""
    channel = get_channel()
    if isinstance(channel, InMemoryBroadcastChannel):
        name, title = "memory", "In-memory mode"
        messages = "Messages stay in this web process (in-memory channel)"
    else:
        name, title = "redis", "Redis mode"
        messages = f"Messages travel through Redis at {redis_address(channel)}"
    if run_job.app.conf.task_always_eager:
        jobs = "jobs run in a thread of this web process (Celery eager mode)."
    else:
        jobs = "jobs run on Celery workers (celery -A testproject worker)."
    return {"name": name, "title": title, "detail": f"{messages}; {jobs}"}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {
        "mode": current_mode(),
        "chat_topic": CHAT_TOPIC,
        "chat_stream": stream_url(CHAT_TOPIC),
        "max_chat_message": MAX_CHAT_MESSAGE,
    }
    return render(request, "demo/index.html", context)


@require_POST
def new_job(request: HttpRequest) -> JsonResponse:
    """Create a job this session owns: its id, topic and URLs. Nothing runs yet."""
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


@require_POST
def post_chat(request: HttpRequest) -> HttpResponse:
    """Publish the form field ``message`` to the chat topic: 204, or 400/503 with a reason."""
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
