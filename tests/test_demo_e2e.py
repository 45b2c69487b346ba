"""The demo end to end with real processes: a Celery worker publishes a job's progress
through a private Redis, the web server (uvicorn) streams it over HTTP, and
``manage.py tail_topic`` / ``publish_topic`` in other processes see the same topics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core import signing

from .demo_fixtures import JOB_STEPS, DemoSite, DemoWebServer, Visitor, job_events, run_job
from .django_fixtures import ROOT, EventStream
from .waiting import WAIT, wait_until

#: Jobs started at the same time by as many visitors.
CONCURRENT_JOBS = 8
#: The SECRET_KEY the demo's settings used to default to, published with the code.
FORMER_DEFAULT_KEY = "insecure-key-for-tests-and-the-demo-only"


@pytest.fixture
def visitor(site: DemoSite) -> Iterator[Visitor]:
    with Visitor(site.url) as visitor:
        visitor.open_page()
        yield visitor


@pytest.fixture
def publisher(site: DemoSite) -> Iterator[redis.Redis]:
    client = site.redis.client()
    yield client
    client.close()


def assert_complete_job(job: dict[str, str], events: list[dict[str, Any]]) -> None:
    """Every event of the job, in order: step 0 (who runs it), steps 1..N, then done."""
    assert [event["job"] for event in events] == [job["id"]] * (JOB_STEPS + 2)
    assert [event["step"] for event in events] == [*range(JOB_STEPS + 1), JOB_STEPS]
    assert [event["percent"] for event in events] == [
        *(step * 100 // JOB_STEPS for step in range(JOB_STEPS + 1)),
        100,
    ]
    assert [event["event"] for event in events] == ["progress"] * (JOB_STEPS + 1) + ["done"]


def test_the_page_says_it_runs_on_redis_and_a_worker(site: DemoSite, visitor: Visitor) -> None:
    page = visitor.open_page()
    assert 'data-mode="redis"' in page
    assert f"Redis at 127.0.0.1:{site.redis.port}/0" in page
    assert "jobs run on Celery workers" in page


def test_a_workers_progress_reaches_the_stream_and_a_terminal_in_order(
    site: DemoSite, visitor: Visitor
) -> None:
    job = visitor.new_job()
    tail = site.manage("tail_topic", job["topic"], "--format", "json",
                       "--count", str(JOB_STEPS + 2), "--timeout", str(WAIT * 2))  # fmt: skip
    try:
        with visitor.client.stream("GET", job["stream"]) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            stream = EventStream(response).wait_open()
            # The web process and the terminal are both subscribed: start the job.
            assert wait_until(lambda: site.redis.numsub(job["topic"]) == 2, WAIT)
            assert visitor.post(job["start"]).status_code == 202
            events = job_events(stream)
            assert visitor.post(job["start"]).status_code == 409  # Once only.
        output, errors = tail.communicate(timeout=WAIT * 2)
    finally:
        tail.kill()
        tail.wait()
    assert_complete_job(job, events)
    # The worker subprocess ran it, not the web process.
    assert events[0]["message"] == f"Started on worker {site.worker.hostname}."
    assert tail.returncode == 0, errors
    tailed = [json.loads(line) for line in output.splitlines()]
    assert [line["topic"] for line in tailed] == [job["topic"]] * len(events)
    assert [json.loads(line["payload"]) for line in tailed] == [
        {key: value for key, value in event.items() if key != "event"} for event in events
    ]
    # The stream was closed after "done", as the page does: nothing stays subscribed.
    assert wait_until(lambda: site.redis.numsub(job["topic"]) == 0, WAIT)


def run_concurrent_jobs(url: str, count: int) -> list[tuple[dict[str, str], list[Any]]]:
    """Run ``count`` jobs at once, each for its own visitor as the page does."""

    def one_visitor(_: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
        with Visitor(url) as visitor:
            visitor.open_page()
            return run_job(visitor)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one_visitor, range(count)))
    assert len({job["id"] for job, _ in results}) == count
    return results


def test_concurrent_jobs_lose_no_event(site: DemoSite) -> None:
    for job, events in run_concurrent_jobs(site.url, CONCURRENT_JOBS):
        assert_complete_job(job, events)
        assert wait_until(lambda: site.redis.numsub(job["topic"]) == 0, WAIT)


def test_a_jobs_stream_url_is_its_only_key(site: DemoSite, visitor: Visitor) -> None:
    job = visitor.new_job()
    stream_path, _, query = job["stream"].partition("?")
    assert query.startswith("token=")
    with Visitor(site.url) as other:
        other.open_page()
        # Without the token, the demo's authorizer asks the session: not this one's job.
        assert other.client.get(stream_path).status_code == 403
        assert other.post(job["start"]).status_code == 403
        token = query.removeprefix("token=")
        tampered = token[:-1] + ("B" if token.endswith("A") else "A")
        assert other.client.get(f"{stream_path}?token={tampered}").status_code == 403
        assert other.client.get("/broadcast/jobs:not-a-job").status_code == 403
        assert other.client.get("/broadcast/elsewhere").status_code == 403
        assert site.redis.numsub(job["topic"]) == 0
        # The chat topic is public.
        with other.client.stream("GET", "/broadcast/chat") as response:
            assert response.status_code == 200
            EventStream(response).wait_open()
    # A session remembers several jobs, and keeps its rights across requests.
    second = visitor.new_job()
    for owned in (job, second):
        with visitor.client.stream("GET", owned["stream"].partition("?")[0]) as response:
            assert response.status_code == 200


def test_chat_messages_from_the_page_a_terminal_and_redis_reach_every_reader(
    site: DemoSite, visitor: Visitor, publisher: redis.Redis
) -> None:
    with Visitor(site.url) as reader, reader.client.stream("GET", "/broadcast/chat") as response:
        stream = EventStream(response).wait_open()
        assert visitor.post("/chat/", data={"message": "  from the page  "}).status_code == 204
        stream.read_until(lambda events: len(events) == 1)
        terminal = site.manage("publish_topic", "chat", "from a terminal")
        _, errors = terminal.communicate(timeout=WAIT * 2)
        assert terminal.returncode == 0, errors
        stream.read_until(lambda events: len(events) == 2)
        publisher.publish("chat", b"\xffraw")
        stream.read_until(lambda events: len(events) == 3)
    assert [event.data for event in stream.events[:2]] == ["from the page", "from a terminal"]
    assert stream.events[2].type == "binary"
    for refused in ("", "   ", "x" * 501, "x" * 20_000):  # The last is a body over 16 KiB.
        assert visitor.post("/chat/", data={"message": refused}).status_code == 400


def test_without_redis_jobs_run_in_threads_of_the_web_process() -> None:
    with DemoWebServer(redis=None) as web, Visitor(web.url) as visitor:
        page = visitor.open_page()
        assert 'data-mode="memory"' in page
        assert "Celery eager mode" in page
        results = run_concurrent_jobs(web.url, 4)
    for job, events in results:
        assert_complete_job(job, events)
        assert events[0]["message"] == (
            "Started in a thread of the web process (Celery eager mode)."
        )


def test_chat_messages_are_rate_limited_per_client() -> None:
    limit = 3
    web = DemoWebServer(redis=None, DEMO_CHAT_MESSAGES=str(limit), DEMO_CHAT_WINDOW="60")
    with web, Visitor(web.url) as visitor:
        visitor.open_page()
        # A fixed window: 2 * limit + 1 messages span two windows at most.
        answers = [visitor.post("/chat/", data={"message": f"{n}"}) for n in range(2 * limit + 1)]
        with Visitor(web.url) as other:  # Same address, another session: the same limit.
            other.open_page()
            answers.append(other.post("/chat/", data={"message": "me too"}))
    statuses = [answer.status_code for answer in answers]
    assert statuses[:limit] == [204] * limit
    assert statuses.count(204) <= 2 * limit
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused
    assert all(1 <= int(answer.headers["Retry-After"]) <= 60 for answer in refused)


def test_the_demo_serves_no_test_urls_and_trusts_no_known_key(site: DemoSite) -> None:
    with Visitor(site.url) as visitor:
        visitor.open_page()
        assert visitor.client.get("/testing/idle-stream/").status_code == 404
        job = visitor.new_job()

    def session_cookie(key: str) -> str:
        """A session cookie that says it owns the job, signed with ``key``."""
        return signing.dumps(
            {"demo_jobs": {job["id"]: "created"}},
            key=key,
            salt="django.contrib.sessions.backends.signed_cookies",
            serializer=signing.JSONSerializer,
            compress=True,
        )

    with Visitor(site.url) as attacker:
        attacker.open_page()
        attacker.client.cookies.set("sessionid", session_cookie(FORMER_DEFAULT_KEY))
        assert attacker.post(job["start"]).status_code == 403
        # The same cookie with the key the servers share (the tests') is the session's own.
        attacker.client.cookies.set("sessionid", session_cookie(settings.SECRET_KEY))
        assert attacker.post(job["start"]).status_code == 202


def settings_value(name: str, **environ: str) -> str:
    """Return ``repr(settings.<name>)`` of testproject's settings in a new process whose
    environment is only ``environ``."""
    code = (
        "import django; django.setup(); from django.conf import settings; "
        f"print(repr(settings.{name}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "testproject.settings", **environ},
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.strip()


def test_without_a_configured_key_each_process_makes_up_its_own() -> None:
    keys = {settings_value("SECRET_KEY") for _ in range(2)}
    assert len(keys) == 2
    assert all(len(key) >= 50 for key in keys)
    assert settings_value("SECRET_KEY", DJANGO_SECRET_KEY="k" * 50) == repr("k" * 50)


def test_the_streams_chat_keeps_a_bounded_history() -> None:
    redis = {"REDIS_URL": "redis://127.0.0.1:1/0"}  # Read, never connected to.
    streams = settings_value("BROADCAST_CHANNELS", **redis, BROADCAST_BACKEND="streams")
    assert "'OPTIONS': {'maxlen': 1000}" in streams
    assert "maxlen" not in settings_value("BROADCAST_CHANNELS", **redis)


def test_the_time_zone_is_the_machines() -> None:
    assert settings_value("TIME_ZONE", TZ="Asia/Kolkata") == repr("Asia/Kolkata")
    assert settings_value("TIME_ZONE", TZ="Not/AZone") == repr("UTC")
    assert settings_value("TIME_ZONE") != repr("America/Chicago")


def test_a_busy_port_is_one_clear_error() -> None:
    with DemoWebServer(redis=None) as web:
        run = subprocess.run(
            [sys.executable, "manage.py", "serve_demo", "--port", str(web.port)],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings"},
            capture_output=True,
            text=True,
            timeout=WAIT * 2,
            check=False,
        )
    assert run.returncode == 1
    assert f"Cannot listen on 127.0.0.1 port {web.port}" in run.stderr
    assert "DEMO_PORT" in run.stderr
    assert "Traceback" not in run.stderr
    assert "Open http" not in run.stdout
