"""The admin console at /admin: users, clients, signing keys, the audit log (keys: keyvault's /admin/keys)."""

from . import views  # noqa: F401  (attach the routes to bp)
from .blueprint import SECTIONS, bp  # noqa: F401
