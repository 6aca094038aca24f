"""Real headless Chromium (Debian's, by path; never a downloaded one) against the live test server.

Pages run with JavaScript switched off: every flow must work as plain HTML forms.
Each test saves screenshots to test-artifacts/ (git-ignored). Helpers: tests/helpers/browser.py; the
`browser` fixture (one Chromium for the run) is in tests/conftest.py.
"""

from __future__ import annotations

import pytest

from tests.helpers.browser import Browsing


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
