"""The OpenAPI description of the JSON API (authserver/openapi.py), served at /api/openapi.json."""

from .views import bp  # noqa: F401
