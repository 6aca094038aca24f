"""The broker: login transactions for thin clients (state, nonce, PKCE and the code exchange)."""

from .views import bp  # noqa: F401
