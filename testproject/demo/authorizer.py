"""Who may stream what in the demo: each visitor reads only the jobs they started, plus chat.

The jobs a visitor created are remembered in their session (an anonymous session is
enough), so the policy needs no user accounts and no database. ``can_stream`` is the
project's ``BROADCAST_STREAM_AUTHORIZER``. The demo's pages hand out stream URLs with
a token (``broadcast_app.tokens.stream_url``), which the stream accepts without asking
it; it decides for the URLs without one.
"""

from __future__ import annotations

from django.http import HttpRequest

#: The public topic of the live-topic panel; anyone may read and write it.
CHAT_TOPIC = "chat"
#: A job's progress is published to ``jobs:<job id>``.
JOB_TOPIC_PREFIX = "jobs:"
#: Session key of ``{job id: "created" | "started"}``, oldest first.
SESSION_KEY = "demo_jobs"
#: Jobs remembered per session; the oldest are forgotten (a cookie holds about 4 kB).
MAX_JOBS = 20

CREATED = "created"
STARTED = "started"


def job_topic(job_id: str) -> str:
    return JOB_TOPIC_PREFIX + job_id


def remember_job(request: HttpRequest, job_id: str, state: str = CREATED) -> None:
    """Record that this session owns ``job_id`` (in ``state``)."""
    jobs: dict[str, str] = dict(request.session.get(SESSION_KEY, {}))
    jobs.pop(job_id, None)
    jobs[job_id] = state
    request.session[SESSION_KEY] = dict(list(jobs.items())[-MAX_JOBS:])


def job_state(request: HttpRequest, job_id: str) -> str | None:
    """Return the state of a job this session owns, or None if it does not own it."""
    state: str | None = request.session.get(SESSION_KEY, {}).get(job_id)
    return state


def can_stream(request: HttpRequest, topic: str) -> bool:
    """Allow the chat topic to everyone, and a job's topic to the session that created it."""
    if topic == CHAT_TOPIC:
        return True
    if not topic.startswith(JOB_TOPIC_PREFIX):
        return False
    return job_state(request, topic.removeprefix(JOB_TOPIC_PREFIX)) is not None
