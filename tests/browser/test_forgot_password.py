""""Forgot your password?" end to end in Chromium (JavaScript off): the link read from a real SMTP
server on loopback, the new password chosen, the old one refused, the link dead afterwards."""

from __future__ import annotations

import pytest

from tests.helpers.browser import follow
from tests.helpers.factories import DEFAULT_PASSWORD, make_user
from tests.helpers.smtp import SmtpSink, mail_settings

pytestmark = pytest.mark.browser

NEW_PASSWORD = "my new holiday passphrase"


@pytest.fixture
def smtp(tmp_path_factory):
    sink = SmtpSink(tmp_path_factory.mktemp("relay")).start()
    yield sink
    sink.stop()


@pytest.fixture
def settings(backend, database_urls, tmp_path, smtp):
    return mail_settings(tmp_path, database_urls[backend], smtp)


@pytest.fixture
def worker(app, services):
    """The outbox's worker thread, as in production (woken when a message is committed)."""
    from authserver.mail.outbox import MailWorker

    services.mail.outbox.worker = MailWorker(app, services.mail.outbox, interval=0.5)
    services.mail.outbox.worker.start()
    yield
    services.mail.outbox.worker.stop()


def sign_in(page, username: str, password: str):
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    follow(page.get_by_role("button", name="Sign in"))


def test_forgot_password_end_to_end(browsing, services, smtp, worker):
    make_user(services, "alice", email="alice@photos.example", name="Alice")
    b = browsing()
    page = b.page
    page.goto("/login")
    follow(page.get_by_role("link", name="Forgot your password?"))
    assert page.url.endswith("/password/forgot")
    b.shot("forgot")
    page.get_by_label("Email address").fill("alice@photos.example")
    follow(page.get_by_role("button", name="Send the link"))
    assert "on its way" in page.locator("#reset-sent").inner_text()
    b.shot("sent")

    [message] = smtp.wait_for(1)
    assert message.recipients == ["alice@photos.example"]
    path = message.link()
    page.goto(path)
    assert page.url.endswith("/password/reset")  # the token is gone from the address bar
    assert path.rsplit("/", 1)[1] not in page.content()
    assert page.locator("#link-username").inner_text() == "alice"
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("New password again").fill("short")
    follow(page.get_by_role("button", name="Change password"))
    assert "8 to 1024" in page.locator("#new_password-error").inner_text()
    b.shot("too-short")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    b.shot("choose")
    follow(page.get_by_role("button", name="Change password"))
    assert page.url.endswith("/login")
    assert "Password changed" in page.locator("#flash").inner_text()
    b.shot("changed")

    sign_in(page, "alice", DEFAULT_PASSWORD)
    assert "not correct" in page.locator("#login-error").inner_text()
    sign_in(page, "alice", NEW_PASSWORD)
    page.wait_for_url("**/account")
    assert "verified" in page.locator("#email-status").inner_text()

    other = browsing().page
    other.goto(path)
    assert "does not work any more" in other.content()
    smtp.wait_for(2)  # the "password changed" notice
    assert "Your password was changed" in smtp.messages[-1].subject
