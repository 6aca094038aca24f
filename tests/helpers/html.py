"""Reading server-rendered pages in tests: field errors, values shown once, form actions; the HTML login."""

from __future__ import annotations

import re

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD


def field_error(html: str, field_id: str) -> str | None:
    """The error text beside a field, when the field points at it with aria-describedby."""
    described = re.search(rf'<[^>]*\bid="{re.escape(field_id)}"[^>]*>', html)
    assert described, f"the page has a field {field_id}"
    if f"{field_id}-error" not in described.group(0):
        return None
    match = re.search(rf'id="{re.escape(field_id)}-error">([^<]*)<', html)
    return match.group(1) if match else None


def shown_value(html: str, element_id: str) -> str | None:
    match = re.search(rf'id="{re.escape(element_id)}" type="text" class="secret" readonly value="([^"]+)"', html)
    return match.group(1) if match else None


def form_action(html: str) -> str:
    """Where the (first) POST form on the page is sent."""
    match = re.search(r'<form method="post" action="([^"]+)"', html)
    assert match
    return match.group(1).replace("&amp;", "&")


def browser_login(client, username: str, password: str = DEFAULT_PASSWORD):
    """The HTML login form, as a browser sends it."""
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf_token(page.text), "username": username, "password": password})
