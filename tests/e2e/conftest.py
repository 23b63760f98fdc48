"""Browser tests: Playwright for Python driving Debian's chromium (never a downloaded one)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("OTAHUB_CHROMIUM", "/usr/bin/chromium")

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the test extras bring it
    sync_playwright = None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None or shutil.which(CHROMIUM) is None:
        pytest.skip("needs playwright and Debian's chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    try:
        yield opened
    finally:
        context.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: OTAHUB_SCREENSHOT_DIR (docs/ when refreshing them), else tmp."""
    return Path(os.environ.get("OTAHUB_SCREENSHOT_DIR") or tmp_path)
