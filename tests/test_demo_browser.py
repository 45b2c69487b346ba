"""The demo page in a real browser: headless Chromium (Debian's) driven by Playwright.

The page runs in the Redis mode — web server, Celery worker and Redis as separate
processes — because that is the path users deploy; the in-memory mode is covered
over HTTP in test_demo_e2e.py. With UPDATE_SCREENSHOT=1 the test also rewrites the
README's screenshot, docs/demo.png; otherwise it takes it into a temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from .demo_fixtures import (
    DemoSite,
)
from .django_fixtures import ROOT
from .waiting import WAIT, wait_until

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
README_SCREENSHOT = ROOT / "docs" / "demo.png"
VIEWPORT: ViewportSize = {"width": 900, "height": 600}
#: Milliseconds Playwright's expectations wait.
EXPECT_MS = int(WAIT * 1000)


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
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(EXPECT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"The page's JavaScript raised: {errors}"


def test_a_job_and_the_live_topic_in_the_browser(
    site: DemoSite, page: Page, tmp_path: Path
) -> None:
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

    update = os.environ.get("UPDATE_SCREENSHOT") == "1"
    screenshot = README_SCREENSHOT if update else tmp_path / "demo.png"
    page.screenshot(path=screenshot)
    assert 0 < screenshot.stat().st_size < 200_000


def test_the_page_reconnects_when_the_web_server_restarts(site: DemoSite, page: Page) -> None:
    page.goto(site.url + "/")
    chat_status = page.locator("#chat-status")
    expect(chat_status).to_have_text("live")

    site.stop_web()
    expect(chat_status).to_have_text("reconnecting…")
    site.start_web()
    # EventSource retries every 3 s (the stream's retry hint) until the server is back.
    expect(chat_status).to_have_text("live")
    assert wait_until(lambda: site.redis.numsub("chat") == 1, WAIT)
    with site.redis.client() as client:
        client.publish("chat", "After the restart")
    expect(page.locator("#chat-list")).to_contain_text("After the restart")

    # The job flow works against the new server, in the same session.
    page.get_by_role("button", name="Start job").click()
    expect(page.locator(".job").first.locator(".status")).to_have_text("done")
