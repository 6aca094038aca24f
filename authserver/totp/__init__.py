"""TOTP second factor: enrolment, verification, recovery codes, and their pages."""

from .views import bp  # noqa: F401
