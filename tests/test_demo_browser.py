"""The demo page in a real browser: headless Chromium (Debian's) driven by Playwright.

The page runs in the Redis mode — web server, Celery worker and Redis as separate
processes — because that is the path users deploy; the in-memory mode is covered
over HTTP in test_demo_e2e.py, and broadcast.js itself in test_demo_client.py. With
UPDATE_SCREENSHOT=1 the test also rewrites the README's screenshot, docs/demo.png;
otherwise it takes it into a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, Response, expect

from localservers import RedisServer

from .demo_fixtures import RECONNECT_AFTER_DRAIN, DemoSite, DemoWebServer
from .django_fixtures import ROOT
from .waiting import WAIT, wait_until

README_SCREENSHOT = ROOT / "docs" / "demo.png"


def log_lines(page: Page) -> list[str]:
    """The job log's lines, oldest first (the page adds each at the top)."""
    return page.locator("#job-log li span").all_inner_texts()[::-1]


def test_a_job_and_the_live_topic_in_the_browser(
    site: DemoSite, page: Page, tmp_path: Path
) -> None:
    failed: list[str] = []

    def check(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    page.on("response", check)
    page.goto(site.url + "/")
    expect(page.locator("#mode")).to_contain_text("Redis mode")
    chat_status = page.locator("#chat-status")
    expect(chat_status).to_have_text("live")

    page.get_by_role("button", name="Start job").click()
    job = page.locator(".job").first
    expect(job.locator("progress")).to_have_js_property("value", 100)
    expect(job.locator(".percent")).to_have_text("100%")
    expect(job.locator(".status")).to_have_text("done")
    log = page.locator("#job-log")
    expect(log).to_contain_text(f"Started on worker {site.worker.hostname}.")
    expect(log).to_contain_text("Job finished.")
    lines = log_lines(page)
    label = lines[0].split()[0]
    assert lines[:2] == [f"{label} queued", f"{label} 0% Started on worker {site.worker.hostname}."]
    assert job.locator(".job-hint").is_hidden()
    # The page closed the finished job's stream: nothing stays subscribed to it.
    topic = job.locator(".job-topic").inner_text()
    assert wait_until(lambda: site.redis.numsub(topic) == 0, WAIT)

    chat = page.locator("#chat-list")
    page.get_by_label("Message").fill("Hello from the page")
    page.get_by_role("button", name="Publish").click()
    expect(chat).to_contain_text("Hello from the page")
    expect(page.get_by_label("Message")).to_have_value("")
    with site.redis.client() as client:
        client.publish("chat", "Published to Redis by another process")
    expect(chat.locator("li").first).to_contain_text("Published to Redis by another process")

    # The favicon, the style sheet and both scripts were found.
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon is not None
    assert page.request.get(site.url + icon).ok
    assert failed == []
    # Static files are read before they are sent: no sync iterator reached the event loop.
    assert "synchronous iterators" not in site.web.log()

    update = os.environ.get("UPDATE_SCREENSHOT") == "1"
    screenshot = README_SCREENSHOT if update else tmp_path / "demo.png"
    page.screenshot(path=screenshot)
    assert 0 < screenshot.stat().st_size < 200_000


def test_the_page_reconnects_when_the_web_server_restarts(site: DemoSite, page: Page) -> None:
    page.goto(site.url + "/")
    chat_status = page.locator("#chat-status")
    expect(chat_status).to_have_text("live")

    site.stop_web()
    expect(chat_status).to_have_attribute("data-state", "waiting")
    expect(chat_status).to_contain_text("reconnecting, retry in")
    site.start_web()
    # broadcast.js comes back after the retry the server sent as it drained its streams.
    expect(chat_status).to_have_text("live", timeout=(RECONNECT_AFTER_DRAIN + WAIT) * 1000)
    assert wait_until(lambda: site.redis.numsub("chat") == 1, WAIT)
    with site.redis.client() as client:
        client.publish("chat", "After the restart")
    expect(page.locator("#chat-list")).to_contain_text("After the restart")

    # The job flow works against the new server, in the same session.
    page.get_by_role("button", name="Start job").click()
    expect(page.locator(".job").first.locator(".status")).to_have_text("done")


def test_the_page_says_so_when_no_worker_takes_a_job(page: Page) -> None:
    with RedisServer() as redis_server, DemoWebServer(redis_server) as web:
        page.goto(web.url + "/")
        page.get_by_role("button", name="Start job").click()
        job = page.locator(".job").first
        expect(job.locator(".status")).to_have_text("live")
        expect(page.locator("#job-log")).to_contain_text("queued")
        hint = job.locator(".job-hint")
        expect(hint).to_be_hidden()
        expect(hint).to_be_visible()  # After a few seconds.
        expect(hint).to_contain_text("celery -A testproject worker")
        assert job.locator("progress").evaluate("bar => bar.value") == 0
