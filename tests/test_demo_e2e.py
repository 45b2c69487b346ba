"""The demo end to end with real processes: a Celery worker publishes a job's progress
through a private Redis, the web server (uvicorn) streams it over HTTP, and
``manage.py tail_topic`` / ``publish_topic`` in other processes see the same topics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from .demo_fixtures import JOB_STEPS, DemoSite, DemoWebServer, Visitor, job_events, run_job
from .django_fixtures import EventStream
from .waiting import WAIT, wait_until

#: Jobs started at the same time by as many visitors.
CONCURRENT_JOBS = 8


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
    assert [event["done"] for event in events] == [False] * (JOB_STEPS + 1) + [True]


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
    assert [json.loads(line["payload"]) for line in tailed] == events
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


def test_a_visitor_streams_only_the_jobs_it_started(site: DemoSite, visitor: Visitor) -> None:
    job = visitor.new_job()
    with Visitor(site.url) as other:
        other.open_page()
        assert other.client.get(job["stream"]).status_code == 403
        assert other.post(job["start"]).status_code == 403
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
        with visitor.client.stream("GET", owned["stream"]) as response:
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
    for refused in ("", "   ", "x" * 501):
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
