"""The JSON API's routes against its OpenAPI document: what is served and what is described."""

from __future__ import annotations

import re

METHODS = ("get", "post", "put", "patch", "delete")


def routed_operations(app) -> set[tuple[str, str]]:
    """(method, path) of every /api/ route of the app, paths written as OpenAPI writes them."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        found |= {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def described_operations(document: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item if method in METHODS}
