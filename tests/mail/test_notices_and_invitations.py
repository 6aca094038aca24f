"""Security notices (a second factor added or removed, the password changed, an API key minted, the
address changed), each of which can be turned off; and invitations from the admin console."""

from __future__ import annotations

import pytest

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import enrol_totp, login, make_key, make_user
from tests.helpers.html import browser_login, field_error
from tests.helpers.smtp import follow_link


def subjects(messages) -> list[str]:
    return [m.subject.split(" · ")[0] for m in messages]


def test_each_notice_is_mailed(services, smtp, deliver, db):
    user = make_user(services, "alice", email="alice@photos.example")
    enrol_totp(services, user)
    services.totp.reset(user, actor="test")
    services.accounts.set_password(user, "a new passphrase here", actor="test")
    make_key(services, user, name="lightroom")
    deliver()
    assert subjects(smtp.to("alice@photos.example")) == [
        "Two-factor sign-in was turned on", "Two-factor sign-in was turned off", "Your password was changed",
        "A new API key was created"]
    key_notice = smtp.to("alice@photos.example")[-1]
    assert "lightroom" in key_notice.text and "pkid-" in key_notice.text
    for message in smtp.messages:
        assert "http://localhost/account" in message.text and "localhost" in message.subject
        assert "<img" not in message.html and "<script" not in message.html


def test_adding_and_removing_passkeys_is_mailed(services, smtp, deliver):
    from tests.helpers.webauthn import SoftAuthenticator

    user = make_user(services, "alice", email="alice@photos.example")
    options = services.passkeys.registration_options(user, "session:s1")
    passkey = services.passkeys.register(user, "session:s1", SoftAuthenticator().create(options), "Kitchen iPad",
                                         actor="test")
    services.passkeys.remove(user, passkey.id, actor="test")
    deliver()
    added, removed = smtp.to("alice@photos.example")
    assert added.subject.startswith("A passkey was added") and "Kitchen iPad" in added.text
    assert removed.subject.startswith("A passkey was removed") and "Kitchen iPad" in removed.text


def test_notices_can_be_turned_off(app, services, smtp, deliver):
    services.mail.settings = services.settings.replace(mail_notices=("email_changed",))
    user = make_user(services, "alice", email="alice@photos.example")
    services.accounts.set_password(user, "a new passphrase here", actor="test")
    make_key(services, user, name="lightroom")
    assert deliver() == []


def test_a_user_without_an_address_gets_nothing_and_nothing_fails(services, smtp, deliver):
    user = make_user(services, "alice", email="")
    services.accounts.set_password(user, "a new passphrase here", actor="test")
    assert deliver() == []


def test_names_in_messages_are_escaped_in_html(services, smtp, deliver):
    user = make_user(services, "mallory", email="m@photos.example", name="<b>Mallory</b>")
    services.mail.send_verification(user, actor="test")
    [message] = deliver()
    assert "<b>Mallory</b>" not in message.html and "&lt;b&gt;Mallory&lt;/b&gt;" in message.html


# -- invitations ----------------------------------------------------------------

def admin_client(app, services):
    make_user(services, "root", admin=True)
    client = app.test_client()
    browser_login(client, "root")
    return client


def create(client, **fields):
    page = client.get("/admin/users")
    data = {"csrf_token": csrf_token(page.text), "username": "carol", "email": "carol@photos.example",
            "name": "Carol", "groups": "", **fields}
    return client.post("/admin/users", data=data)


def accept(client, link: str, password: str = "carol's own passphrase"):
    return follow_link(client, link, "/invite", new_password=password, confirm_password=password)


def test_invitation_end_to_end(app, services, smtp, deliver):
    admin = admin_client(app, services)
    created = create(admin, invite="y")
    assert created.status_code in (302, 303)
    carol = services.accounts.find("carol")
    assert carol.password_hash is None
    assert login(app.test_client(), "carol", "").status_code in (400, 401)
    users = admin.get("/admin/users")
    assert 'data-invited="carol"' in users.text
    [message] = deliver()
    assert message.recipients == ["carol@photos.example"] and "You are invited" in message.subject
    assert "7 days" in message.text
    invitee = app.test_client()
    done = accept(invitee, message.link())
    assert done.status_code == 303 and done.headers["Location"] == "/login"
    assert login(app.test_client(), "carol", "carol's own passphrase").status_code == 200
    assert services.accounts.find("carol").email_verified
    assert 'data-invited="carol"' not in admin.get("/admin/users").text
    assert accept(app.test_client(), message.link(), "someone else's").status_code == 400  # once


def test_invitation_expires(app, services, smtp, deliver, clock):
    admin = admin_client(app, services)
    create(admin, invite="y")
    [message] = deliver()
    clock.advance(days=7, seconds=1)
    assert accept(app.test_client(), message.link()).status_code == 400


def test_resend_replaces_the_link_and_cancel_kills_it(app, services, smtp, deliver):
    admin = admin_client(app, services)
    create(admin, invite="y")
    carol = services.accounts.find("carol")
    page = admin.get(f"/admin/users/{carol.id}")
    assert "Resend the invitation" in page.text
    assert admin.post(f"/admin/users/{carol.id}/resend-invitation",
                      data={"csrf_token": csrf_token(page.text)}).status_code in (302, 303)
    first, second = deliver()
    assert first.link() != second.link()
    assert accept(app.test_client(), first.link()).status_code == 400
    page = admin.get(f"/admin/users/{carol.id}")
    assert admin.post(f"/admin/users/{carol.id}/cancel-invitation",
                      data={"csrf_token": csrf_token(page.text)}).status_code in (302, 303)
    assert accept(app.test_client(), second.link()).status_code == 400
    assert services.accounts.find("carol").password_hash is None


def test_a_cancelled_invitation_cannot_be_taken_up_by_a_password_reset(app, services, smtp, deliver, db):
    admin = admin_client(app, services)
    create(admin, invite="y")
    carol = services.accounts.find("carol")
    page = admin.get(f"/admin/users/{carol.id}")
    assert admin.post(f"/admin/users/{carol.id}/cancel-invitation",
                      data={"csrf_token": csrf_token(page.text)}).status_code in (302, 303)
    db.session.expire_all()  # the cancel was another request's session
    services.mail.request_reset("carol@photos.example", "192.0.2.9")
    sent = [m.subject for m in deliver()]
    assert sent and all(subject.startswith("You are invited") for subject in sent)  # no reset link
    assert services.accounts.find("carol").is_disabled


def test_a_keys_new_secret_is_mailed_too(services, smtp, deliver):
    user = make_user(services, "alice", email="alice@photos.example")
    key_id, _ = make_key(services, user, name="lightroom")
    services.keys.rotate(services.keys.find(key_id), grace_seconds=0, actor="test")
    minted, rotated = deliver()
    assert minted.subject.startswith("A new API key was created")
    assert rotated.subject.startswith("A new secret was made for an API key") and key_id in rotated.text


def test_names_and_addresses_in_notices_are_escaped_in_html(services, smtp, deliver):
    user = make_user(services, "alice", email="alice@photos.example")
    make_key(services, user, name="<img src=x onerror=alert(1)>")
    [notice] = deliver()
    assert "<img src=x" not in notice.html and "&lt;img src=x onerror=alert(1)&gt;" in notice.html
    assert "<img src=x onerror=alert(1)>" in notice.text  # the plain text part is text


def test_invitation_actions_need_csrf_and_an_admin(app, services, smtp, deliver):
    admin = admin_client(app, services)
    create(admin, invite="y")
    carol = services.accounts.find("carol")
    assert admin.post(f"/admin/users/{carol.id}/resend-invitation").status_code == 400
    make_user(services, "eve")
    eve = app.test_client()
    browser_login(eve, "eve")
    token = csrf_token(eve.get("/account").text)
    assert eve.post(f"/admin/users/{carol.id}/resend-invitation", data={"csrf_token": token}).status_code == 403
    assert len(deliver()) == 1


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"invite": "y", "password": "a password given"}, "password", "Either a password or an invitation"),
    ({"invite": "y", "email": ""}, "email", "invitation goes by email"),
])
def test_bad_invitations_are_refused_beside_the_field_and_create_nothing(app, services, smtp, deliver, fields,
                                                                         field, message):
    admin = admin_client(app, services)
    refused = create(admin, **fields)
    assert refused.status_code == 400 and message in (field_error(refused.text, field) or "")
    assert services.accounts.find("carol") is None and deliver() == []


def test_a_user_with_a_password_cannot_be_invited(app, services, smtp, deliver):
    admin = admin_client(app, services)
    dave = make_user(services, "dave")
    page = admin.get(f"/admin/users/{dave.id}")
    assert "Send an invitation" not in page.text
    refused = admin.post(f"/admin/users/{dave.id}/resend-invitation", data={"csrf_token": csrf_token(page.text)})
    assert refused.status_code == 400 and deliver() == []
