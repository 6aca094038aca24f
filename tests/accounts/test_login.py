
import pytest

from authserver.cookies import SESSION_COOKIE
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, login, make_user


def test_json_login_then_me_shows_the_user(client, services):
    make_user(services, "Alice")
    response = login(client, "alice")
    assert response.status_code == 200
    assert response.json["username"] == "Alice"
    assert response.json["auth_method"] == "password"
    cookie = response.headers["Set-Cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    me = client.get("/api/me")
    assert me.status_code == 200
    assert me.json["username"] == "Alice"
    assert me.json["amr"] == ["pwd"]


@pytest.mark.parametrize("username,password", [("alice", "wrong password"), ("nobody", DEFAULT_PASSWORD)])
def test_bad_login_looks_the_same_for_unknown_and_known_users(client, services, username, password):
    make_user(services, "alice")
    response = login(client, username, password)
    assert response.status_code == 401
    assert response.json == {"error": "invalid_credentials",
                             "error_description": "The username or password is not correct."}


def test_disabled_user_cannot_log_in(client, services, db):
    user = make_user(services, "alice")
    user.is_disabled = True
    db.session.commit()
    assert login(client, "alice").status_code == 401


def test_me_without_credentials_is_401_json(client):
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"


def test_browser_login_form_with_csrf_and_safe_next(client, services):
    make_user(services, "bob")
    page = client.get("/login?next=/account")
    assert page.status_code == 200
    token = csrf_token(page.text)
    response = client.post("/login", data={"username": "bob", "password": DEFAULT_PASSWORD,
                                           "csrf_token": token, "next": "/account"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    assert "bob" in client.get("/account").text


def test_browser_login_without_csrf_token_is_refused(client, services):
    make_user(services, "bob")
    response = client.post("/login", data={"username": "bob", "password": DEFAULT_PASSWORD})
    assert response.status_code == 400
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize("target",
                         ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_next_never_leaves_this_server(client, services, target):
    make_user(services, "bob")
    token = csrf_token(client.get("/login").text)
    response = client.post("/login", data={"username": "bob", "password": DEFAULT_PASSWORD,
                                           "csrf_token": token, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"


def test_logout_ends_the_session(client, services):
    make_user(services, "alice")
    login(client, "alice")
    assert client.post("/api/session/logout", json={}).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_session_idle_and_absolute_timeouts(client, services, clock):
    make_user(services, "alice")
    login(client, "alice")
    clock.advance(seconds=services.settings.session_idle_seconds + 1)
    assert client.get("/api/me").status_code == 401

    login(client, "alice")
    opened_at = clock.now()
    step = services.settings.session_idle_seconds // 2
    while client.get("/api/me").status_code == 200:  # stay active: only the absolute limit ends it
        clock.advance(seconds=step)
        assert (clock.now() - opened_at).total_seconds() <= services.settings.session_absolute_seconds + step
    assert (clock.now() - opened_at).total_seconds() >= services.settings.session_absolute_seconds


def test_usernames_are_case_insensitive_unique(services):
    from authserver.accounts.service import UsernameTaken

    make_user(services, "Carol")
    with pytest.raises(UsernameTaken):
        make_user(services, "carol", email="another@photos.example")


def test_one_email_address_one_account(services):
    """Apps that match users by email (forward-auth's Remote-Email, OIDC) must not mistake one for another."""
    from authserver.accounts.service import InvalidUserInput

    make_user(services, "bob", email="bob@photos.example")
    alice = make_user(services, "alice", email="alice@photos.example")
    with pytest.raises(InvalidUserInput, match="another account"):
        make_user(services, "mallory", email="BOB@photos.example")
    with pytest.raises(InvalidUserInput, match="another account"):
        services.accounts.update_profile(alice, name="Alice", email="Bob@Photos.example", actor="test")
    assert services.accounts.update_profile(alice, name="Alice", email="ALICE@photos.example", actor="test")


def test_password_rehashed_when_parameters_change(app, services, db):
    user = make_user(services, "alice")
    old_hash = user.password_hash
    from authserver.crypto import PasswordHasher

    services.accounts.passwords = PasswordHasher(2, 128, 1)
    services.accounts.check_password("alice", DEFAULT_PASSWORD)
    db.session.refresh(user)
    assert user.password_hash != old_hash
    assert "m=128,t=2" in user.password_hash


def test_a_login_refused_for_a_throttled_key_beside_it_writes_no_session(client, services, db):
    """A JSON login carrying a bad key header past the address's limit is refused before a session
    is opened: no session row without a cookie to show for it."""
    from sqlalchemy import func, select

    from authserver.accounts.models import SsoSession
    from tests.helpers.factories import make_key

    services.throttle.rules["key:address"] = (2, 60)
    alice = make_user(services, "alice")
    key_id, _ = make_key(services, alice)
    bad = {"X-API-Key": f"{key_id}:wrong"}
    for _ in range(2):
        client.get("/api/me", headers=bad)
    refused = client.post("/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD}, headers=bad)
    assert refused.status_code == 429
    assert db.session.scalar(select(func.count()).select_from(SsoSession)) == 0
