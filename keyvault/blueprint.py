"""The key vault's blueprint: its JSON API, pages and `authserver key …` commands attach to it."""

from __future__ import annotations

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
