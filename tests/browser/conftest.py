"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright for Python.

`tests/browser/ensure_chromium.sh` installs it when missing; without it these tests skip
locally and fail in CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal.conftest import totp_now

CHROMIUM = os.environ.get("WARDGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
SCREENSHOTS = Path(os.environ.get("WARDGATE_SCREENSHOT_DIR", "var/screenshots"))


@pytest.fixture
def chromium_browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must provide chromium (tests/browser/ensure_chromium.sh)")
        pytest.skip("chromium is not installed (tests/browser/ensure_chromium.sh)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop running on this thread; Django's ORM calls
    # from the test body are still synchronous and safe here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(chromium_browser: Any) -> Iterator[Any]:
    """Request it last: Playwright's loop must start after fixtures that use async_to_sync."""
    contexts = []

    def make() -> Any:
        context = chromium_browser.new_context(viewport={"width": 1280, "height": 900},
                                               accept_downloads=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, base_url: str, username: str, password: str,
            totp_secret: str | None = None) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    if totp_secret:
        page.wait_for_url("**/accounts/2fa/authenticate/**")
        page.fill("input[name=code]", totp_now(totp_secret))
        page.click("button[type=submit]")
    page.wait_for_selector("header nav")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
