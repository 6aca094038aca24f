"""The admin console's blueprint and its tabs."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__)

# The console's tabs, in order; capabilities with admin pages add theirs here.
SECTIONS: list[tuple[str, str]] = [
    ("/admin", "Overview"),
    ("/admin/users", "Users"),
    ("/admin/clients", "Clients"),
    ("/admin/keys", "API keys"),
    ("/admin/signing-keys", "Signing keys"),
    ("/admin/audit", "Audit log"),
]


@bp.app_context_processor
def _admin_sections():
    return {"admin_sections": lambda: SECTIONS}
