"""Real rows with sane defaults, and the credentials clients send."""

from __future__ import annotations

import base64
from itertools import count

_seq = count(1)

DEFAULT_PASSWORD = "correct horse battery staple"


def make_user(services, username: str | None = None, *, password: str | None = DEFAULT_PASSWORD,
              admin: bool = False, email: str | None = None, name: str = "", groups=()):
    n = next(_seq)
    username = username or f"user{n}"
    return services.accounts.create_user(
        username,
        email=email if email is not None else f"{username.lower()}@photos.example",
        name=name or username.title(),
        password=password,
        is_admin=admin,
        groups=groups,
        actor="test",
    )


def login(client, username: str, password: str = DEFAULT_PASSWORD):
    """JSON login through the test client; the session cookie stays in the client."""
    return client.post("/api/session/login", json={"username": username, "password": password})


class Authenticator:
    """The user's authenticator app: codes from the enrolled secret at the test clock's time.

    Computed with pyotp directly, independently of the server's own TOTP code.
    """

    def __init__(self, secret: str, clock):
        import pyotp

        self.totp = pyotp.TOTP(secret)
        self.clock = clock

    def code(self, steps: int = 0) -> str:
        return self.totp.at(self.clock.now().timestamp() + 30 * steps)


def enrol_totp(services, user):
    """Enrol and confirm TOTP for `user`; answers (authenticator, recovery codes).

    Confirmation spends the current time step, so the clock moves to the next one.
    """
    enrolment = services.totp.begin_enrolment(user, actor="test")
    device = Authenticator(enrolment.secret, services.clock)
    codes = services.totp.confirm_enrolment(user, device.code(), actor="test", address="192.0.2.1")
    services.clock.advance(seconds=30)
    return device, codes


def make_key(services, user, *, name: str = "uploader", scopes=None, expires_in_days: int | None = None,
             cidrs=(), actor: str = "test"):
    """A real key for `user`; returns (key_id, secret), the secret as the owner sees it once."""
    from datetime import timedelta

    minted = services.keys.mint(
        user,
        name=name,
        scopes=scopes,
        expires_in=timedelta(days=expires_in_days) if expires_in_days else None,
        cidrs=cidrs,
        actor=actor,
    )
    return minted.key_id, minted.secret


def make_client(services, name: str = "Gallery", *, redirect_uris=("https://gallery.example/callback",),
                scope: str = "openid profile email groups", grants=("authorization_code", "refresh_token"), **options):
    """A registered OAuth client; returns (RegisteredClient, secret or None)."""
    created = services.oidc.clients.create(name=name, redirect_uris=list(redirect_uris), scope=scope,
                                           grant_types=list(grants), actor="test", **options)
    return services.oidc.clients.get(created.row.client_id), created.client_secret


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def key_headers(form: str, key_id: str, secret: str) -> dict[str, str]:
    """An API key in one of the header forms clients send: raw, basic or x-api-key."""
    token = f"{key_id}:{secret}"
    return {
        "raw": {"Authorization": token},
        "basic": {"Authorization": basic_auth(key_id, secret)},
        "x-api-key": {"X-API-Key": token},
    }[form]
