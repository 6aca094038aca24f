"""The key vault: `pkid-` API keys minted, hashed, rotated with grace, revoked and verified.

authserver reaches it through `KeyService` (services.keys), the `ApiKeyStrategy`
in the identity chain, and this blueprint (JSON API, account and admin pages,
and the `authserver key …` commands).
"""

from . import api, cli, views  # noqa: F401  (attach routes and commands to bp)
from .blueprint import bp  # noqa: F401
