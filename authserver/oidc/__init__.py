"""OpenID Connect provider on Authlib: clients, codes, tokens, consent, logout, devices."""

from . import device_views, views  # noqa: F401  (attach the routes to bp)
from .blueprint import bp  # noqa: F401
