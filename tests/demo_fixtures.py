"""The demo as real processes: a private redis-server, a Celery worker and the web server
``make demo`` runs (``manage.py serve_demo``, uvicorn), plus a visitor with an HTTP client.

A pytest plugin (see ``conftest.pytest_plugins``): its fixtures serve every test module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, Self

import httpx
import pytest

from localservers import LoggedProcess, RedisServer, Service

from .django_fixtures import ROOT, Event, EventStream, WebServer
from .waiting import WAIT

#: Seconds a Celery worker may take to start consuming.
WORKER_START_TIMEOUT = 30.0
#: The demo job of the tests: short, yet long enough for several to overlap.
JOB_STEPS = 5
STEP_SECONDS = 0.1


class DemoWebServer(WebServer):
    """``manage.py serve_demo``: uvicorn as ``make demo`` runs it, with the demo's authorizer.

    ``redis`` None is the in-memory mode (jobs run eagerly in the web process). Give
    ``port`` to come back on the port of a server that was stopped.
    """

    def __init__(self, redis: RedisServer | None, port: int | None = None) -> None:
        super().__init__(
            "serve_demo",
            redis,
            BROADCAST_STREAM_AUTHORIZER="testproject.demo.authorizer.can_stream",
            DEMO_JOB_STEPS=str(JOB_STEPS),
            DEMO_STEP_SECONDS=str(STEP_SECONDS),
        )
        if port is not None:
            self.port = port

    def command(self) -> list[str]:
        return [sys.executable, "manage.py", "serve_demo", "--port", str(self.port),
                "--no-access-log"]  # fmt: skip


class CeleryWorker(LoggedProcess):
    """``celery -A testproject worker`` on a running ``redis`` (broker and channel), 4 threads.

    ``stop()`` is a warm shutdown (SIGTERM), killed if it takes longer than WAIT.
    """

    start_timeout = WORKER_START_TIMEOUT
    poll_interval = 0.1
    stop_signal = signal.SIGTERM
    stop_timeout = WAIT

    def __init__(self, redis: RedisServer) -> None:
        super().__init__(
            "The Celery worker",
            "celery",
            ROOT,
            {
                "DJANGO_SETTINGS_MODULE": "testproject.settings",
                "REDIS_URL": redis.url,
                "PYTHONUNBUFFERED": "1",
            },
        )
        self.hostname = f"demo-worker-{uuid.uuid4().hex[:8]}@localhost"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "testproject", "worker",
                "--pool=threads", "--concurrency=4", "--loglevel=INFO", "-n", self.hostname,
                "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip

    def ready(self) -> bool:
        return f"{self.hostname} ready." in self.log()


class DemoSite(Service):
    """The Redis mode of the demo: redis-server, Celery worker and web server, all private.

    Started by ``with``; stops everything it started on exit, whatever failed.
    """

    redis: RedisServer
    worker: CeleryWorker
    web: DemoWebServer

    @property
    def url(self) -> str:
        return self.web.url

    def start(self) -> Self:
        with ExitStack() as stack:
            # Each is built once the one before runs: a server's port is final only then.
            self.redis = stack.enter_context(RedisServer())
            self.worker = stack.enter_context(CeleryWorker(self.redis))
            self.web = stack.enter_context(DemoWebServer(self.redis))
            self._stack = stack.pop_all()
        return self

    def stop(self) -> None:
        with self._stack:
            self.web.stop()  # The current one: start_web() may have replaced the first.

    def stop_web(self) -> None:
        self.web.stop()

    def start_web(self) -> None:
        """Start a new web server on the port of the last one."""
        self.web = DemoWebServer(self.redis, port=self.web.port).start()

    def manage(self, *args: str) -> subprocess.Popen[str]:
        """Start ``manage.py *args`` against the site's Redis; the caller waits for it."""
        environ = {"DJANGO_SETTINGS_MODULE": "testproject.settings", "REDIS_URL": self.redis.url}
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**os.environ, **environ},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


class Visitor:
    """A browser-like visitor: its own cookies (session, CSRF) on an httpx client."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=WAIT)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open_page(self) -> str:
        response = self.client.get("/")
        assert response.status_code == 200, response.text
        return response.text

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        token = self.client.cookies.get("csrftoken") or ""
        return self.client.post(url, headers={"X-CSRFToken": token}, **kwargs)

    def new_job(self) -> dict[str, str]:
        response = self.post("/jobs/")
        assert response.status_code == 201, response.text
        job: dict[str, str] = response.json()
        return job


def job_events(stream: EventStream) -> list[dict[str, Any]]:
    """Read a job's stream until its ``done`` event; return the decoded events."""

    def done(events: list[Event]) -> bool:
        return any(json.loads(event.data).get("done") for event in events)

    stream.read_until(done)
    return [json.loads(event.data) for event in stream.events]


def run_job(visitor: Visitor) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Do what the page does: create a job, open its stream, start the job once the stream
    is open, read until done. Return the job and its events."""
    job = visitor.new_job()
    with visitor.client.stream("GET", job["stream"]) as response:
        assert response.status_code == 200, response.read()
        stream = EventStream(response).wait_open()
        started = visitor.post(job["start"])
        assert started.status_code == 202, started.text
        return job, job_events(stream)


@pytest.fixture(scope="module")
def site() -> Iterator[DemoSite]:
    """The demo in Redis mode, for the tests of one module."""
    with DemoSite() as site:
        yield site
