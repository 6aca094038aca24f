"""Email verification: a link to a new or changed address (a button, not the link, verifies), the
ID token's and userinfo's email_verified follows; a changed address needs the current password and
the old address is told."""

from __future__ import annotations

from authserver.oidc.claims import user_claims
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, make_user
from tests.helpers.html import browser_login
from tests.helpers.smtp import follow_link


def verify(client, link: str):
    return follow_link(client, link, "/email/verify")


def change_email(client, new: str, password: str = DEFAULT_PASSWORD):
    token = csrf_token(client.get("/account").text)
    return client.post("/account/profile", data={"csrf_token": token, "name": "Alice", "email": new,
                                                 "email_current_password": password})


def test_account_page_sends_a_link_and_following_it_verifies(client, services, smtp, deliver):
    make_user(services, "alice", email="alice@photos.example")
    browser_login(client, "alice")
    page = client.get("/account")
    assert "not verified" in page.text and "Send a verification link" in page.text
    sent = client.post("/account/email/verify", data={"csrf_token": csrf_token(page.text)})
    assert sent.status_code == 303
    [message] = deliver()
    assert message.recipients == ["alice@photos.example"] and "Confirm your email address" in message.subject
    link = message.link()
    # Opening the link (as a mail scanner would) verifies nothing.
    anonymous = client.application.test_client()
    assert anonymous.get(link).status_code == 303
    assert anonymous.get("/email/verify").status_code == 200
    assert not services.accounts.find("alice").email_verified
    done = verify(anonymous, link)
    assert done.status_code == 200 and "now the verified address" in done.text
    user = services.accounts.find("alice")
    assert user.email_verified and user_claims(user, "openid email")["email_verified"] is True
    assert verify(client.application.test_client(), link).status_code == 400  # once


def test_changing_the_address_needs_the_password_notifies_the_old_one_and_verifies_the_new(
        client, services, smtp, deliver, db):
    user = make_user(services, "alice", email="alice@photos.example")
    user.email_verified = True
    db.session.commit()
    browser_login(client, "alice")
    assert change_email(client, "alice@new.example", "wrong password").status_code == 400
    assert deliver() == []
    assert change_email(client, "alice@new.example").status_code in (302, 303)
    messages = deliver()
    old = smtp.to("alice@photos.example")
    new = smtp.to("alice@new.example")
    assert len(messages) == 2 and len(old) == 1 and len(new) == 1
    assert "Your email address was changed" in old[0].subject and "alice@new.example" in old[0].text
    assert "/email/verify/" not in old[0].text  # the old address gets no link
    assert not services.accounts.find("alice").email_verified
    assert user_claims(services.accounts.find("alice"), "openid email")["email_verified"] is False
    assert verify(client, new[0].link()).status_code == 200
    assert services.accounts.find("alice").email_verified


def test_a_link_to_a_replaced_address_does_not_verify_the_new_one(client, services, smtp, deliver):
    make_user(services, "alice", email="alice@photos.example")
    browser_login(client, "alice")
    assert change_email(client, "first@new.example").status_code in (302, 303)
    deliver()
    first_link = smtp.to("first@new.example")[0].link()
    assert change_email(client, "second@new.example").status_code in (302, 303)
    deliver()
    assert verify(client, first_link).status_code == 400
    assert not services.accounts.find("alice").email_verified


def test_admin_can_mark_an_address_verified_without_mail(services):
    admin = make_user(services, "root", admin=True)
    user = make_user(services, "bob", email="bob@photos.example")
    services.admin.update_user(admin, user, name="Bob", email="bob@other.example", groups=[], is_admin=False,
                               email_verified=True)
    assert services.accounts.find("bob").email_verified
    services.mail.outbox.drain()
    # The old address is told; the new one needs no link: the admin vouched for it.
    kinds = [m.kind for m in services.mail.links.live("verify")]
    assert kinds == []


def test_verification_link_is_refused_for_a_disabled_user(client, services, smtp, deliver):
    admin = make_user(services, "root", admin=True)
    user = make_user(services, "alice", email="alice@photos.example")
    services.mail.send_verification(user, actor="test")
    link = deliver()[0].link()
    services.admin.set_disabled(admin, services.accounts.find("alice"), True)
    assert client.get(link).status_code == 400


def test_verify_page_without_a_link_is_a_400(client, services):
    assert client.get("/email/verify").status_code == 400
    page = client.get("/password/forgot")
    assert client.post("/email/verify", data={"csrf_token": csrf_token(page.text)}).status_code == 400


def test_verification_mails_are_throttled_per_account(client, services, smtp, deliver):
    """Nobody floods a mailbox by typing it into their own account and pressing the button."""
    make_user(services, "mallory", email="victim@elsewhere.example")
    browser_login(client, "mallory")
    statuses = []
    for _ in range(7):
        page = client.get("/account")
        statuses.append(client.post("/account/email/verify", data={"csrf_token": csrf_token(page.text)}).status_code)
    assert statuses == [303] * 5 + [429, 429]
    assert len(deliver()) == 5


def test_a_throttled_address_change_is_saved_without_a_link(client, services, smtp, deliver):
    make_user(services, "mallory", email="m@photos.example")
    browser_login(client, "mallory")
    for n in range(6):
        assert change_email(client, f"victim{n}@elsewhere.example").status_code in (302, 303)
    assert services.accounts.find("mallory").email == "victim5@elsewhere.example"
    deliver()
    links = [[m for m in smtp.to(f"victim{n}@elsewhere.example") if "Confirm" in m.subject] for n in range(6)]
    assert [len(sent) for sent in links] == [1, 1, 1, 1, 1, 0]


def test_a_verification_committed_while_the_address_changes_does_not_verify_the_new_one(services, db):
    """The race the black-box review won: the address change had read the row unverified, a
    verification of the old address committed meanwhile, and the change's write left it verified
    for the new one. The change writes the flag whatever it read; a verification marks only the
    address its link was sent to."""
    from sqlalchemy import update

    from authserver.accounts.models import User

    user = make_user(services, "alice", email="me@own.example")
    assert user.email_verified is False  # what the change's session read
    with db.engine.begin() as other:  # another request's verification commits meanwhile
        other.execute(update(User).where(User.id == user.id).values(email_verified=True))
    services.accounts.update_profile(user, name="Alice", email="victim@victim.example", actor="test")
    db.session.expire_all()
    fresh = services.accounts.find("alice")
    assert fresh.email == "victim@victim.example" and fresh.email_verified is False
    # A link's verification is for its own address only: the one just replaced is not marked.
    assert services.mail._mark_verified(fresh, "me@own.example") is False
    assert services.accounts.find("alice").email_verified is False


def test_only_a_verified_old_address_is_told_of_a_change(client, services, smtp, deliver):
    """Switching one's own account between strangers' addresses sends them nothing (unverified)."""
    make_user(services, "alice", email="alice@photos.example")
    browser_login(client, "alice")
    for address in ("bomb1@victim.example", "bomb2@victim.example", "bomb1@victim.example"):
        assert change_email(client, address).status_code == 303
    sent = deliver()
    assert [m for m in sent if "changed" in m.subject] == []
    assert all(m.recipients[0].startswith("bomb") and "Confirm" in m.subject for m in sent)
