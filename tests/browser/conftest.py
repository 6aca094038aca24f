"""Real headless Chromium (Debian's, by path; never a downloaded one) against the live test server.

Pages run with JavaScript switched off: every flow must work as plain HTML forms.
Each test saves screenshots to test-artifacts/ (git-ignored). Helpers: tests/helpers/browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.browser import CHROMIUM_ARGS, Browsing, chromium_path


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if not path or not Path(path).exists():
        pytest.skip("No Chromium binary: install Debian's chromium or set AUTHSERVER_TEST_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browsing(browser, live_server, request):
    """`browsing()` opens a fresh browser profile; each is closed after the test."""
    opened: list[Browsing] = []

    def open_profile(**kwargs) -> Browsing:
        profile = Browsing(browser, live_server.url, request.node.name, **kwargs)
        opened.append(profile)
        return profile

    yield open_profile
    for profile in opened:
        profile.close()
