"""Real headless Chromium (Debian's, by path; never a downloaded one): where it is, how it is started,
and a browser profile that takes screenshots (to test-artifacts/, git-ignored) and checks the markup.
The `browser` fixture is in tests/conftest.py (one Chromium for the whole run: Playwright's sync API
runs one at a time), the others in tests/browser/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
PHONE = {"width": 390, "height": 844}
DUPLICATE_IDS = """[...document.querySelectorAll('[id]')].map(e => e.id)
  .filter((id, i, all) => all.indexOf(id) !== i)"""
# Every visible form control has a name a screen reader can read: a <label>, or aria-label.
UNLABELLED = """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(e => !e.hidden && !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name || e.id)"""


def chromium_path() -> str | None:
    return os.environ.get("AUTHSERVER_TEST_CHROMIUM") or shutil.which("chromium")


@contextlib.contextmanager
def launched_chromium() -> Iterator:
    """Headless Chromium through Playwright; skips, saying why, when either is missing."""
    path = chromium_path()
    if not path or not Path(path).exists():
        pytest.skip("No Chromium binary: install Debian's chromium or set AUTHSERVER_TEST_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def follow(target) -> None:
    """Click a button or link and wait for the page it loads, so no check reads the old page."""
    with target.page.expect_navigation():
        target.click()


class Browsing:
    """One browser profile (cookies) on the live server, with screenshots named after the test."""

    def __init__(self, browser, base_url: str, test_name: str, *, viewport=None):
        self.base_url = base_url
        self.test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-")
        self.context = browser.new_context(base_url=base_url, java_script_enabled=False,
                                           viewport=viewport or {"width": 1100, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()

    def shot(self, label: str) -> Path:
        """Save a screenshot; every page shot is also checked for duplicate ids and unlabelled fields."""
        self.check_markup()
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.test_name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def check_markup(self) -> None:
        url = self.page.url
        assert self.page.evaluate(DUPLICATE_IDS) == [], url
        assert self.page.evaluate(UNLABELLED) == [], url

    def fits_the_screen(self) -> bool:
        """No sideways scrolling: the page is readable at this width."""
        return self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    def close(self):
        self.context.close()
