"""Self-service password reset: "Forgot your password?" mails a single-use, short-lived link bound to
the password of the time; the answer never tells whether the address has an account; the reset ends
every session and refresh token, and the second factor stays."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from authserver.audit.models import AuditEvent
from authserver.mail.links import LinkInvalid
from authserver.mail.models import EmailLink, OutboxMessage
from authserver.mail.service import RESET_JOB
from tests.helpers.csrf import csrf_token
from tests.helpers.database import counted_statements
from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, login, make_client, make_user
from tests.helpers.html import field_error
from tests.helpers.oidc import exchange, get_code
from tests.helpers.smtp import follow_link

NEW_PASSWORD = "a brand new passphrase"


def ask_reset(client, email: str, address: str = "198.51.100.7"):
    page = client.get("/password/forgot")
    return client.post("/password/forgot", data={"csrf_token": csrf_token(page.text), "email": email},
                       environ_base={"REMOTE_ADDR": address})


def mailed_link(smtp, deliver, address: str) -> str:
    deliver()
    return smtp.to(address)[-1].link()


def choose(client, link: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    """Follow the mailed link as a browser does, then post the new password."""
    return follow_link(client, link, "/password/reset", new_password=password,
                       confirm_password=password if confirm is None else confirm)


@pytest.fixture
def alice(services):
    return make_user(services, "alice", email="Alice@Photos.example")


def test_reset_end_to_end(client, services, smtp, deliver, alice, app):
    other = app.test_client()
    assert login(other, "alice").status_code == 200
    assert ask_reset(client, "alice@photos.example").status_code == 200  # the address in any case
    link = mailed_link(smtp, deliver, "Alice@Photos.example")
    [message] = smtp.messages
    assert "Reset your password" in message.subject and "30 minutes" in message.text
    assert "alice" in message.text and "http://localhost/password/reset/" in message.html
    assert "<img" not in message.html  # no tracking pixels, no remote content

    landing = client.get(link)
    assert landing.status_code == 303 and landing.headers["Location"] == "/password/reset"
    page = client.get("/password/reset")
    assert page.status_code == 200 and 'id="link-username">alice<' in page.text
    token = link.rsplit("/", 1)[1]
    assert token not in page.text  # the page does not carry the token (no Referer, history or form leak)
    done = client.post("/password/reset", data={"csrf_token": csrf_token(page.text), "new_password": NEW_PASSWORD,
                                                "confirm_password": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["Location"] == "/login"

    assert login(app.test_client(), "alice").status_code == 401
    assert login(app.test_client(), "alice", NEW_PASSWORD).status_code == 200
    assert other.get("/api/me").status_code == 401  # every session ended
    user = services.accounts.find("alice")
    assert user.email_verified  # the link proved the mailbox
    actions = {event.action for event in services.audit.query(target="user:alice", limit=50)}
    assert {"user.password_reset_mailed", "user.password_set", "oauth.tokens_revoked",
            "session.revoke_all"} <= actions
    deliver()
    assert "Your password was changed" in smtp.messages[-1].subject  # the notice


def test_the_link_works_once(client, services, smtp, deliver, alice, app):
    ask_reset(client, "alice@photos.example")
    link = mailed_link(smtp, deliver, "Alice@Photos.example")
    assert choose(client, link).status_code == 303
    again = choose(app.test_client(), link, "yet another passphrase")
    assert again.status_code == 400 and "does not work any more" in again.text
    assert login(app.test_client(), "alice", NEW_PASSWORD).status_code == 200


def test_an_expired_link_is_refused(client, services, smtp, deliver, alice, clock, app):
    ask_reset(client, "alice@photos.example")
    link = mailed_link(smtp, deliver, "Alice@Photos.example")
    clock.advance(minutes=30, seconds=1)
    refused = choose(client, link)
    assert refused.status_code == 400 and "expired" in refused.text
    assert login(app.test_client(), "alice").status_code == 200


def test_an_expired_link_is_refused_on_the_form_too(client, services, smtp, deliver, alice, clock):
    """Landed in time, posted too late."""
    ask_reset(client, "alice@photos.example")
    link = mailed_link(smtp, deliver, "Alice@Photos.example")
    client.get(link)
    page = client.get("/password/reset")
    clock.advance(minutes=31)
    late = client.post("/password/reset", data={"csrf_token": csrf_token(page.text), "new_password": NEW_PASSWORD,
                                                "confirm_password": NEW_PASSWORD})
    assert late.status_code == 400


def test_a_link_dies_when_the_password_changes(client, services, smtp, deliver, alice, app):
    ask_reset(client, "alice@photos.example")
    old_link = mailed_link(smtp, deliver, "Alice@Photos.example")
    services.accounts.set_password(services.accounts.find("alice"), "changed meanwhile", actor="test")
    assert choose(client, old_link).status_code == 400
    assert login(app.test_client(), "alice", "changed meanwhile").status_code == 200


def test_an_older_link_cannot_undo_a_newer_reset(client, services, smtp, deliver, alice, app):
    ask_reset(client, "alice@photos.example")
    first = mailed_link(smtp, deliver, "Alice@Photos.example")
    ask_reset(client, "alice@photos.example")
    second = mailed_link(smtp, deliver, "Alice@Photos.example")
    assert first != second
    assert choose(client, second).status_code == 303
    assert choose(app.test_client(), first, "the attacker's choice").status_code == 400
    assert login(app.test_client(), "alice", NEW_PASSWORD).status_code == 200


def test_a_link_dies_when_the_address_changes(client, services, smtp, deliver, alice):
    ask_reset(client, "alice@photos.example")
    link = mailed_link(smtp, deliver, "Alice@Photos.example")
    services.accounts.update_profile(services.accounts.find("alice"), name="Alice", email="alice@new.example",
                                     actor="test")
    assert choose(client, link).status_code == 400


def test_unknown_address_same_answer_no_message(client, services, smtp, deliver, alice, db):
    known = ask_reset(client, "alice@photos.example", address="198.51.100.1")
    unknown = ask_reset(client, "nobody@photos.example", address="198.51.100.2")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("alice@", "ADDRESS@") == unknown.text.replace("nobody@", "ADDRESS@")
    deliver()
    assert [m.recipients for m in smtp.messages] == [["Alice@Photos.example"]]
    messages = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind != RESET_JOB)
    assert db.session.scalar(messages) == 1
    assert db.session.scalar(select(func.count()).select_from(EmailLink)) == 1
    # Both requests were a job, done and its payload (the address asked for) dropped.
    jobs = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == RESET_JOB)).all()
    assert len(jobs) == 2 and all(job.sent_at is not None and job.body_sealed is None for job in jobs)


def test_disabled_account_gets_nothing(client, services, smtp, deliver, alice):
    admin = make_user(services, "root", admin=True)
    services.admin.set_disabled(admin, services.accounts.find("alice"), True)
    assert ask_reset(client, "alice@photos.example").status_code == 200
    assert deliver() == []


def test_requests_are_throttled_per_address_of_the_account(client, services, smtp, deliver, alice):
    statuses = [ask_reset(client, "alice@photos.example", address=f"198.51.100.{n}").status_code
                for n in range(1, 6)]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(deliver()) == 3
    # An unknown address is throttled the same way: nothing to learn from the limits either.
    unknown = [ask_reset(client, "nobody@photos.example", address=f"203.0.113.{n}").status_code
               for n in range(1, 6)]
    assert unknown == statuses


def test_requests_are_throttled_per_client_address(client, services, smtp, deliver):
    statuses = [ask_reset(client, f"someone{n}@photos.example", address="192.0.2.9").status_code for n in range(22)]
    assert statuses[:20] == [200] * 20 and statuses[20:] == [429, 429]


def test_a_reset_keeps_the_second_factor(client, services, smtp, deliver, alice, app):
    enrol_totp(services, services.accounts.find("alice"))
    ask_reset(client, "alice@photos.example")
    assert choose(client, mailed_link(smtp, deliver, "Alice@Photos.example")).status_code == 303
    fresh = app.test_client()
    page = fresh.get("/login")
    step = fresh.post("/login", data={"csrf_token": csrf_token(page.text), "username": "alice",
                                      "password": NEW_PASSWORD})
    assert step.status_code == 303 and step.headers["Location"] == "/login/totp"
    assert login(app.test_client(), "alice", NEW_PASSWORD).json["error"] == "totp_required"


@pytest.mark.parametrize("token", ["abc", "A" * 43, "A" * 44, "%00" * 43, "é" * 43, "x" * 5000, "..%2F..%2Fadmin"])
def test_bad_tokens_are_a_clear_400(client, services, token, alice):
    response = client.get(f"/password/reset/{token}")
    assert response.status_code in (400, 404)
    assert "Traceback" not in response.text


def test_the_form_without_a_link_is_refused(client, services):
    assert client.get("/password/reset").status_code == 400
    page = client.get("/password/forgot")
    posted = client.post("/password/reset", data={"csrf_token": csrf_token(page.text), "new_password": NEW_PASSWORD,
                                                  "confirm_password": NEW_PASSWORD})
    assert posted.status_code == 400


def test_a_verification_link_is_not_a_reset_link(client, services, smtp, deliver, alice):
    services.mail.send_verification(services.accounts.find("alice"), actor="test")
    link = mailed_link(smtp, deliver, "Alice@Photos.example")
    token = link.rsplit("/", 1)[1]
    assert client.get(f"/password/reset/{token}").status_code == 400


def test_forms_need_their_csrf_token(client, services, smtp, deliver, alice):
    assert client.post("/password/forgot", data={"email": "alice@photos.example"}).status_code == 400
    ask_reset(client, "alice@photos.example")
    client.get(mailed_link(smtp, deliver, "Alice@Photos.example"))
    refused = client.post("/password/reset", data={"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert refused.status_code == 400
    assert login(client.application.test_client(), "alice").status_code == 200


def test_bad_new_passwords_are_named_and_spend_nothing(client, services, smtp, deliver, alice):
    ask_reset(client, "alice@photos.example")
    link = mailed_link(smtp, deliver, "Alice@Photos.example")
    short = choose(client, link, "short")
    assert short.status_code == 400 and "8 to 1024" in field_error(short.text, "new_password")
    differ = choose(client, link, NEW_PASSWORD, confirm="something else")
    assert differ.status_code == 400 and "differ" in field_error(differ.text, "confirm_password")
    assert choose(client, link).status_code == 303  # the link still works


def test_bad_forgot_input_is_a_clear_400(client, services, smtp, deliver):
    for value in ("", "not-an-address", "a@b" + "c" * 400, "x\x00y@photos.example"):
        page = client.get("/password/forgot")
        response = client.post("/password/forgot", data={"csrf_token": csrf_token(page.text), "email": value})
        assert response.status_code == 400, value
    assert deliver() == []


def test_two_concurrent_uses_one_winner(services, smtp, deliver, alice, app):
    services.mail.request_reset("alice@photos.example", "192.0.2.1")
    token = mailed_link(smtp, deliver, "Alice@Photos.example").rsplit("/", 1)[1]
    outcomes: list[str] = []

    def use(n: int):
        with app.app_context():
            try:
                services.mail.complete_reset(token, f"racing passphrase {n}")
                outcomes.append("won")
            except LinkInvalid:
                outcomes.append("refused")

    threads = [threading.Thread(target=use, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]


def test_links_are_stored_hashed(services, smtp, deliver, alice, db):
    services.mail.request_reset("alice@photos.example", "192.0.2.1")
    token = mailed_link(smtp, deliver, "Alice@Photos.example").rsplit("/", 1)[1]
    [row] = db.session.scalars(select(EmailLink))
    assert token not in (row.token_hash, row.binding) and len(row.token_hash) == 64
    assert not db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.details.cast(db.String).contains(token)))


def test_default_password_is_unchanged_by_a_request_alone(client, services, smtp, deliver, alice, app):
    ask_reset(client, "alice@photos.example")
    deliver()
    assert login(app.test_client(), "alice", DEFAULT_PASSWORD).status_code == 200


def test_unknown_and_known_addresses_do_the_same_work(services, smtp, deliver, alice, db):
    """No enumeration by timing: the request never looks the address up. It writes the same
    statements (one sealed job, one audit row) whether or not an account has the address; the
    worker mails the link afterwards, outside the request."""
    mail = services.mail
    sent: dict[str, list[str]] = {}
    for email, n in (("alice@photos.example", 1), ("nobody@photos.example", 2)):
        with counted_statements(db) as statements:
            mail.request_reset(email, f"192.0.2.{n}")
        sent[email] = statements[:]
    assert sent["alice@photos.example"] == sent["nobody@photos.example"]
    assert not [sql for sql in sent["alice@photos.example"] if "users" in sql or "email_links" in sql]
    assert db.session.scalar(select(func.count()).select_from(EmailLink)) == 0  # nothing made yet
    assert [m.recipients for m in deliver()] == [["Alice@Photos.example"]]
    assert db.session.scalar(select(func.count()).select_from(EmailLink)) == 1


def test_a_failed_job_is_retried_without_a_second_link(services, smtp, deliver, alice, db, clock, monkeypatch):
    """A reset job that fails (the database, a bug) leaves nothing half-made and runs again later."""
    mail = services.mail
    mail.request_reset("alice@photos.example", "192.0.2.9")
    real = mail.links.issue

    def broken(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(mail.links, "issue", broken)
    assert deliver() == []
    assert db.session.scalar(select(func.count()).select_from(EmailLink)) == 0  # rolled back with the job
    [job] = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == RESET_JOB))
    assert job.attempts == 1 and job.sent_at is None and job.last_error == "RuntimeError"
    monkeypatch.setattr(mail.links, "issue", real)
    clock.advance(seconds=31)
    assert [m.recipients for m in deliver()] == [["Alice@Photos.example"]]
    assert db.session.scalar(select(func.count()).select_from(EmailLink)) == 1


def test_a_reset_revokes_offline_refresh_tokens(client, services, smtp, deliver, alice, app):
    gallery, secret = make_client(services, trusted=True, scope="openid offline_access")
    http = app.test_client()
    assert login(http, "alice").status_code == 200
    code, _, _ = get_code(http, gallery, scope="openid offline_access")
    tokens = exchange(http, gallery, secret, code).json
    assert "refresh_token" in tokens
    ask_reset(client, "alice@photos.example")
    assert choose(client, mailed_link(smtp, deliver, "Alice@Photos.example")).status_code == 303
    refreshed = app.test_client().post("/oauth/token", data={"grant_type": "refresh_token",
                                                             "refresh_token": tokens["refresh_token"]},
                                       auth=(gallery.client_id, secret))
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
