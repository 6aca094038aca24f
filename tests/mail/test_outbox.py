"""The outbox and the relay: STARTTLS with AUTH, implicit TLS, a relay that is down (the page still
answers, the message is retried, nothing secret is logged), the worker thread, sealed bodies."""

from __future__ import annotations

import io
import logging

import pytest
from sqlalchemy import select

from authserver import create_app
from authserver.extensions import db
from authserver.logs import JsonFormatter
from authserver.mail.models import OutboxMessage
from authserver.mail.outbox import MAX_ATTEMPTS, MailWorker
from tests.helpers.csrf import csrf_token
from tests.helpers.database import empty_tables
from tests.helpers.factories import make_user
from tests.helpers.smtp import MAIL_FROM, SMTP_PASSWORD, SmtpSink, free_port, mail_settings


def ask_reset(client, email: str):
    page = client.get("/password/forgot")
    return client.post("/password/forgot", data={"csrf_token": csrf_token(page.text), "email": email})


@pytest.fixture
def logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    ours = logging.getLogger("authserver")
    level = ours.level
    ours.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    yield stream
    ours.removeHandler(handler)
    ours.setLevel(level)


def test_messages_go_through_starttls_with_auth(client, services, deliver, smtp):
    make_user(services, "alice", email="alice@photos.example")
    assert ask_reset(client, "alice@photos.example").status_code == 200
    assert smtp.messages == []  # nothing is sent inside the request
    [received] = deliver()
    assert received.tls and received.authenticated
    assert received.recipients == ["alice@photos.example"]
    assert received.message["From"] == MAIL_FROM
    assert received.message["Auto-Submitted"] == "auto-generated"
    assert received.message.get_body(("plain",)) is not None and received.message.get_body(("html",)) is not None


def test_implicit_tls_relay(tmp_path, database_urls, clock):
    sink = SmtpSink(tmp_path, mode="tls").start()
    try:
        settings = mail_settings(tmp_path, database_urls["sqlite"], sink)
        app = create_app(settings, clock=clock)
        app.config["TESTING"] = True
        with app.app_context():
            services = app.extensions["authserver"]
            user = make_user(services, "tess", email="tess@photos.example")
            services.mail.send_verification(user, actor="test")
            assert services.mail.outbox.drain().sent == 1
            [received] = sink.messages
            assert received.tls and received.authenticated and "/email/verify/" in received.link()
            empty_tables()
    finally:
        sink.stop()


def test_a_relay_whose_certificate_is_not_trusted_gets_nothing(services, smtp, app):
    """Without the relay's CA the certificate check fails: nothing goes out unencrypted instead."""
    services.mail.outbox.transport.ca_file = None
    make_user(services, "alice", email="alice@photos.example")
    services.mail.send_verification(services.accounts.find("alice"), actor="test")
    drained = services.mail.outbox.drain()
    assert drained.retrying == 1 and smtp.messages == []


def test_relay_down_page_answers_message_retried_nothing_secret_logged(client, services, smtp, clock, logs):
    make_user(services, "alice", email="alice@photos.example")
    outbox = services.mail.outbox
    smtp.stop()
    response = ask_reset(client, "alice@photos.example")
    assert response.status_code == 200 and "on its way" in response.text
    drained = outbox.drain()
    assert drained.retrying == 1
    assert len(services.mail.links.live("reset")) == 1  # the link exists, waiting for its message
    [queued] = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reset"))
    assert queued.attempts == 1 and queued.sent_at is None and queued.next_attempt_at > clock.now()
    assert "ConnectionRefusedError" in queued.last_error
    text = logs.getvalue()
    assert "mail not delivered; will retry" in text
    for secret in (SMTP_PASSWORD, "/password/reset/", "Choose a new password"):
        assert secret not in text
    # Not due yet: nothing is tried. After the backoff, with the relay back, it is delivered.
    assert outbox.drain().retrying == 0
    sink = SmtpSink(smtp.ca_file.parent, port=smtp.port).start()
    try:
        outbox.transport.ca_file = sink.ca_file
        clock.advance(seconds=31)
        assert outbox.drain().sent == 1
        [received] = sink.messages
        assert "/password/reset/" in received.link()
    finally:
        sink.stop()


def test_gives_up_after_the_last_attempt(services, app, smtp, clock, logs):
    make_user(services, "alice", email="alice@photos.example")
    services.mail.send_verification(services.accounts.find("alice"), actor="test")
    smtp.stop()
    for _ in range(MAX_ATTEMPTS):
        services.mail.outbox.drain()
        clock.advance(hours=2)
    [row] = db.session.scalars(select(OutboxMessage))
    assert row.failed_at is not None and row.attempts == MAX_ATTEMPTS and row.body_sealed is None
    assert "giving up" in logs.getvalue()
    assert services.mail.outbox.drain().retrying == 0


def test_bodies_are_sealed_and_dropped_once_sent(services, app, deliver):
    make_user(services, "alice", email="alice@photos.example")
    services.mail.send_verification(services.accounts.find("alice"), actor="test")
    [row] = db.session.scalars(select(OutboxMessage))
    assert row.body_sealed.startswith("v1.") and "/email/verify/" not in row.body_sealed
    [received] = deliver()
    db.session.expire_all()
    [row] = db.session.scalars(select(OutboxMessage))
    assert row.sent_at is not None and row.body_sealed is None
    assert received.link().startswith("/email/verify/")


def test_the_worker_thread_delivers_without_being_asked(client, services, smtp, app):
    worker = MailWorker(app, services.mail.outbox, interval=0.2)
    services.mail.outbox.worker = worker
    worker.start()
    try:
        make_user(services, "alice", email="alice@photos.example")
        assert ask_reset(client, "alice@photos.example").status_code == 200
        [received] = smtp.wait_for(1)
        assert received.recipients == ["alice@photos.example"]
    finally:
        worker.stop()


def test_one_message_is_sent_once_by_concurrent_drains(services, app, smtp):
    import threading

    for n in range(5):
        make_user(services, f"u{n}", email=f"u{n}@photos.example")
        services.mail.send_verification(services.accounts.find(f"u{n}"), actor="test")

    def drain():
        with app.app_context():
            services.mail.outbox.drain()

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r for m in smtp.messages for r in m.recipients) == [f"u{n}@photos.example" for n in range(5)]


def test_a_closed_port_is_a_bounded_failure(services, app, clock):
    services.mail.outbox.transport.address = type(services.mail.outbox.transport.address)(
        scheme="smtp", host="127.0.0.1", port=free_port())
    make_user(services, "alice", email="alice@photos.example")
    services.mail.send_verification(services.accounts.find("alice"), actor="test")
    assert services.mail.outbox.drain().retrying == 1


def test_a_relay_without_starttls_gets_nothing(tmp_path, services, app):
    """smtp:// means STARTTLS, required: a relay (or a man in the middle stripping it) that does not
    offer it gets neither the password nor a link."""
    from authserver.settings import check_smtp_url

    plain = SmtpSink(tmp_path, mode="plain").start()
    try:
        services.mail.outbox.transport.address = check_smtp_url(f"smtp://relay:secret@127.0.0.1:{plain.port}")
        make_user(services, "alice", email="alice@photos.example")
        services.mail.send_verification(services.accounts.find("alice"), actor="test")
        drained = services.mail.outbox.drain()
        assert drained.retrying == 1 and plain.messages == []
    finally:
        plain.stop()


def test_old_records_are_swept_and_queued_messages_kept(services, app, smtp, clock):
    make_user(services, "alice", email="alice@photos.example")
    services.mail.send_verification(services.accounts.find("alice"), actor="test")
    services.mail.outbox.drain()
    clock.advance(days=31)
    make_user(services, "bob", email="bob@photos.example")
    smtp.stop()
    services.mail.send_verification(services.accounts.find("bob"), actor="test")
    services.mail.outbox.drain()
    assert services.mail.outbox.sweep() == 1
    [left] = db.session.scalars(select(OutboxMessage))
    assert left.recipient == "bob@photos.example" and left.sent_at is None
