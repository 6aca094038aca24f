"""The CSRF token of a server-rendered form: the one way every test reads it."""

from __future__ import annotations

import re

_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the (first) form on an HTML page."""
    match = _TOKEN.search(html)
    assert match, "the page carries a CSRF token"
    return match.group(1)
