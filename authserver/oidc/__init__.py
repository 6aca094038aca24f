"""OpenID Connect provider on Authlib: clients, codes, tokens, consent, logout."""

from .views import bp  # noqa: F401
