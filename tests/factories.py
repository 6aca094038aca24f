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


def make_client(services, name: str = "Gallery", *, redirect_uris=("https://gallery.example/callback",),
                scope: str = "openid profile email groups", grants=("authorization_code", "refresh_token"), **options):
    """A registered OAuth client; returns (RegisteredClient, secret or None)."""
    created = services.oidc.clients.create(name=name, redirect_uris=list(redirect_uris), scope=scope,
                                           grant_types=list(grants), actor="test", **options)
    return services.oidc.clients.get(created.row.client_id), created.client_secret
