"""Every model, imported so the metadata (and Alembic's autogenerate) sees them all."""

from keyvault.models import ApiKey  # noqa: F401

from .accounts.models import SsoSession, User  # noqa: F401
from .audit.models import AuditEvent  # noqa: F401
