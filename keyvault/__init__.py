"""The key vault: `pkid-` API keys minted, hashed, rotated with grace, revoked and verified.

authserver reaches it through `KeyService` (services.keys), the `ApiKeyStrategy`
in the identity chain, and this blueprint (JSON API, account and admin pages,
and the `authserver key …` commands).
"""

from flask import Blueprint

bp = Blueprint(
    "keyvault",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/keyvault",
    cli_group="key",
)
bp.cli.help = "Mint, rotate, revoke and list API keys."

from . import api, cli, views  # noqa: F401  (attach routes and commands to bp)
