"""Every model, imported so the metadata (and Alembic's autogenerate) sees them all."""

from .accounts.models import SsoSession, User  # noqa: F401
from .audit.models import AuditEvent  # noqa: F401
from .oidc.models import AssertionJti, AuthorizationCode, Consent, OAuthClient, OAuthToken, SigningKey  # noqa: F401
