"""`authserver key mint|rotate|revoke|list`: the operator's key commands (full powers, actor "cli")."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import click

from authserver.web import services

from .api import key_json
from .blueprint import bp
from .service import MAX_EXPIRY_DAYS, MAX_GRACE_SECONDS, KeyVaultError


def _fail(message: str, code: int = 1):
    click.echo(f"authserver: {message}", err=True)
    sys.exit(code)


def _emit(as_json: bool, payload: dict, text: str) -> None:
    click.echo(json.dumps(payload) if as_json else text)


def _key(key_id: str):
    key = services().keys.find(key_id)
    if key is None:
        _fail(f'there is no key "{key_id[:64]}"')
    return key


@bp.cli.command("mint")
@click.option("--user", "username", required=True, help="The owner's username.")
@click.option("--name", required=True, help="What the key is for, e.g. 'lightroom laptop'.")
@click.option("--scope", "scopes", multiple=True, help="A scope; repeatable. Default: the owner's scopes except admin.")
@click.option(
    "--expires-in", "days", type=click.IntRange(1, MAX_EXPIRY_DAYS), default=None, help="Days until it expires."
)
@click.option("--cidr", "cidrs", multiple=True, help="An allowed address range (IPv4 or IPv6); repeatable.")
@click.option("--json", "as_json", is_flag=True)
def mint(username, name, scopes, days, cidrs, as_json):
    """Mint a key; its secret is printed this once."""
    svc = services()
    owner = svc.accounts.find(username)
    if owner is None:
        _fail(f'there is no user "{username[:150]}"')
    try:
        minted = svc.keys.mint(
            owner,
            name=name,
            scopes=list(scopes) or None,
            expires_in=timedelta(days=days) if days else None,
            cidrs=cidrs,
            actor="cli",
        )
    except KeyVaultError as exc:
        _fail(str(exc))
    _emit(
        as_json,
        {"key_id": minted.key_id, "secret": minted.secret},
        f"key {minted.key_id} for {owner.username} ({' '.join(minted.key.scopes)})\n"
        f"secret (shown once): {minted.secret}\n"
        f"use as: {minted.key_id}:{minted.secret}",
    )


@bp.cli.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace-seconds",
    type=click.IntRange(0, MAX_GRACE_SECONDS),
    default=0,
    show_default=True,
    help="How long the old secret keeps working.",
)
@click.option("--json", "as_json", is_flag=True)
def rotate(key_id, grace_seconds, as_json):
    """New secret for the same key id, printed this once."""
    try:
        minted = services().keys.rotate(_key(key_id), grace_seconds=grace_seconds, actor="cli")
    except KeyVaultError as exc:
        _fail(str(exc))
    _emit(
        as_json,
        {"key_id": minted.key_id, "secret": minted.secret},
        f"key {minted.key_id} rotated\nsecret (shown once): {minted.secret}",
    )


@bp.cli.command("revoke")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True)
def revoke(key_id, as_json):
    """Revoke a key at once (and the sessions opened with it)."""
    key = _key(key_id)
    changed = services().keys.revoke(key, actor="cli")
    _emit(
        as_json,
        {"key_id": key.key_id, "revoked": True, "already_revoked": not changed},
        f"key {key.key_id} {'revoked' if changed else 'was already revoked'}",
    )


@bp.cli.command("list")
@click.option("--user", "username", default=None, help="Only this user's keys.")
@click.option("--json", "as_json", is_flag=True)
def list_keys(username, as_json):
    """List keys (never their secrets)."""

    svc = services()
    owner = None
    if username:
        owner = svc.accounts.find(username)
        if owner is None:
            _fail(f'there is no user "{username[:150]}"')
    rows = [key_json(k) for k in svc.keys.list_keys(owner)]
    lines = [f"{r['key_id']}  {r['owner']:<16} {r['status']:<8} {' '.join(r['scopes']):<30} {r['name']}" for r in rows]
    _emit(as_json, {"keys": rows}, "\n".join(lines) or "no keys")
