"""Real rows with sane defaults."""

from __future__ import annotations

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
