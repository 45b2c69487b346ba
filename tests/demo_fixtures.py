"""The demo as real processes: a private redis-server, a Celery worker and the web server
``make demo`` runs (``manage.py serve_demo``, uvicorn), plus a visitor with an HTTP client,
and headless Chromium (Debian's, driven by Playwright) for the page and broadcast.js.

A pytest plugin (see ``conftest.pytest_plugins``): its fixtures serve every test module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from broadcast_app.streaming import DRAIN_RETRY_SPREAD
from localservers import LoggedProcess, RedisServer, Service, wait_until

from .django_fixtures import ROOT, EventStream, WebServer
from .waiting import WAIT

#: Seconds broadcast.js may wait before it reconnects to a server that was stopped: the
#: stream view's retry (3 s) plus the drain's spread, stretched by the client's jitter.
RECONNECT_AFTER_DRAIN = (3.0 + DRAIN_RETRY_SPREAD) * 1.25
#: Seconds a Celery worker may take to start consuming.
WORKER_START_TIMEOUT = 30.0
#: The demo job of the tests: short, yet long enough for several to overlap.
JOB_STEPS = 5
STEP_SECONDS = 0.1


class DemoWebServer(WebServer):
    """``manage.py serve_demo``: uvicorn as ``make demo`` runs it, with the demo's authorizer
    and URLs.

    ``redis`` None is the in-memory mode (jobs run eagerly in the web process). Give
    ``port`` to come back on the port of a server that was stopped.
    """

    def __init__(self, redis: RedisServer | None, port: int | None = None, **environ: str) -> None:
        super().__init__(
            "serve_demo",
            redis,
            DJANGO_ROOT_URLCONF="testproject.urls",
            BROADCAST_STREAM_AUTHORIZER="testproject.demo.authorizer.can_stream",
            DEMO_JOB_STEPS=str(JOB_STEPS),
            DEMO_STEP_SECONDS=str(STEP_SECONDS),
            **{"DEMO_CHAT_MESSAGES": "1000", **environ},  # Tests of the limit set their own.
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
    """Read a job's stream until its ``done`` event; return each event's JSON data, with
    the event's name added as ``"event"``."""
    stream.read_until(lambda events: any(event.type == "done" for event in events))
    return [{"event": event.type, **json.loads(event.data)} for event in stream.events]


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


# -- Headless Chromium ------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT: ViewportSize = {"width": 900, "height": 600}
#: Milliseconds Playwright's expectations and actions wait.
EXPECT_MS = int(WAIT * 1000)
expect.set_options(timeout=EXPECT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package "
            "(apt-get install chromium), or run `make test` as root.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context's page; fails the test if its JavaScript raised."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(EXPECT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"The page's JavaScript raised: {errors}"


# -- broadcast.js, driven from the tests ------------------------------------------------------

#: Defines ``follow(name, url, options)`` in a page that has ``window.broadcast``: a
#: BroadcastStream whose callbacks record into ``streams[name].log``.
RECORDER_JS = """
window.streams = {};
window.follow = (name, url, options) => {
  const log = [];
  const plain = (data) => (data instanceof Uint8Array ? Array.from(data) : data);
  const stream = new window.broadcast.BroadcastStream(url, {
    ...options,
    onEvent: (e) => log.push({kind: "event", type: e.type, data: plain(e.data), text: e.text,
                              id: e.id, at: Date.now()}),
    onGap: () => log.push({kind: "gap", at: Date.now()}),
    onState: (state, d) => log.push({kind: "state", state, reason: d.reason ?? null,
                                     status: d.status ?? null, delay: d.delay ?? null,
                                     reconnect: d.reconnect ?? null, at: Date.now()}),
  });
  window.streams[name] = {stream, log};
};
"""


class RecordedStream:
    """A BroadcastStream in the page, seen through what its callbacks recorded."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name

    def log(self) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = self.page.evaluate(f"streams[{self.name!r}].log")
        return log

    def events(self) -> list[dict[str, Any]]:
        return [entry for entry in self.log() if entry["kind"] == "event"]

    def states(self) -> list[dict[str, Any]]:
        return [entry for entry in self.log() if entry["kind"] == "state"]

    def state(self) -> str:
        state: str = self.page.evaluate(f"streams[{self.name!r}].stream.state")
        return state

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], object], timeout: float = WAIT
    ) -> list[dict[str, Any]]:
        """Wait until ``predicate(log)`` is truthy; return the log."""
        assert wait_until(lambda: predicate(self.log()), timeout, interval=0.05), self.log()
        return self.log()

    def wait_for_state(
        self, state: str, count: int = 1, timeout: float = WAIT
    ) -> list[dict[str, Any]]:
        """Wait until the stream has entered ``state`` ``count`` times; return its states."""
        self.wait_for(lambda log: sum(e.get("state") == state for e in log) >= count, timeout)
        return self.states()

    def close(self) -> None:
        self.page.evaluate(f"streams[{self.name!r}].stream.close()")


class ClientPage:
    """A page of ``server`` (test URLs) with broadcast.js loaded, to follow streams from."""

    def __init__(self, page: Page, server: WebServer) -> None:
        self.page = page
        page.goto(server.url + "/testing/client/")
        page.wait_for_function("window.broadcast !== undefined")
        page.evaluate(RECORDER_JS)
        self._count = 0

    def follow(self, url: str, **options: Any) -> RecordedStream:
        """Follow ``url`` with ``new BroadcastStream(url, options)`` (JSON-able options)."""
        self._count += 1
        name = f"stream-{self._count}"
        self.page.evaluate("([n, u, o]) => follow(n, u, o)", [name, url, options])
        return RecordedStream(self.page, name)


@pytest.fixture(scope="module")
def site() -> Iterator[DemoSite]:
    """The demo in Redis mode, for the tests of one module."""
    with DemoSite() as site:
        yield site
