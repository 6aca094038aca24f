"""The OIDC blueprint, shared by its two views modules (the OAuth endpoints; the device pages)."""

from flask import Blueprint

bp = Blueprint("oidc", __name__)
