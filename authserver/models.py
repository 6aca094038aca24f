"""Every model, imported so the metadata (and Alembic's autogenerate) sees them all."""

from keyvault.models import ApiKey  # noqa: F401

from .accounts.models import PendingLogin, SsoSession, User  # noqa: F401
from .audit.models import AuditEvent  # noqa: F401
from .broker.models import BrokerTransaction  # noqa: F401
from .mail.models import EmailLink, OutboxMessage  # noqa: F401
from .oidc.models import (  # noqa: F401
    AssertionJti,
    AuthorizationCode,
    Consent,
    OAuthClient,
    OAuthToken,
    SigningKey,
)
from .passkeys.models import Passkey, PasskeyChallenge  # noqa: F401
from .throttle import ThrottleCounter  # noqa: F401
from .totp.models import RecoveryCode, TotpCredential  # noqa: F401
