"""Headless Chromium (Debian's `chromium`) driven by Playwright, against a real gateway.

Screenshots of every page land in `tests/console/screenshots/<test>/` (git-ignored) for a person
to look at; `SHUHI_SCREENSHOTS` moves them elsewhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SHUHI_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("SHUHI_SCREENSHOTS", Path(__file__).parent / "screenshots"))
LOCALES = {"ja": "ja-JP", "en": "en-US"}


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Shared by the console tests, and stopped after them: Playwright's sync API keeps an event loop
    running in the main thread while it lives, which later tests' `asyncio.run` would trip over."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/test does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


class Shots:
    """Saves full-page screenshots under one folder per test, numbered in the order taken."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def __call__(self, page: Any, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.evaluate("() => window.scrollTo(0, 0)")  # the sidebar is sticky: capture from the top
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name))


def open_page(browser: Any, language: str, errors: list[str]) -> tuple[Any, Any]:
    """A fresh browser context whose Accept-Language asks for `language`; page errors are collected."""
    context = browser.new_context(locale=LOCALES[language], viewport={"width": 1360, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    return context, page
