"""JSON API: GET/POST /api/keys, POST /api/keys/<key_id>/rotate, DELETE /api/keys/<key_id>."""

from __future__ import annotations

from datetime import timedelta

from flask import request

from authserver import jsonapi
from authserver.errors import ApiError
from authserver.identity import current_identity, require_identity
from authserver.web import services

from .blueprint import bp
from .models import ApiKey
from .service import (
    MAX_CIDRS,
    MAX_EXPIRY_DAYS,
    MAX_GRACE_SECONDS,
    MintedKey,
)


def key_json(key: ApiKey) -> dict:
    """A key as the API shows it: everything but its hashes."""
    now = services().clock.now()
    grace_until = key.previous_valid_until if key.previous_valid_until and key.previous_valid_until > now else None
    if key.revoked_at is not None:
        status = "revoked"
    elif key.expires_at is not None and now >= key.expires_at:
        status = "expired"
    else:
        status = "active"
    return {
        "key_id": key.key_id,
        "name": key.name,
        "owner": key.user.username,
        "scopes": list(key.scopes or []),
        "status": status,
        "allowed_cidrs": list(key.allowed_cidrs or []),
        "expires_at": iso(key.expires_at),
        "created_at": iso(key.created_at),
        "created_by": key.created_by,
        "rotated_at": iso(key.rotated_at),
        "previous_secret_valid_until": iso(grace_until),
        "last_used_at": iso(key.last_used_at),
        "last_used_ip": key.last_used_ip or None,
        "revoked_at": iso(key.revoked_at),
    }


def minted_json(minted: MintedKey) -> dict:
    # The only place a secret leaves the server: once, to the caller who minted or rotated it.
    return {"key_id": minted.key_id, "secret": minted.secret, **key_json(minted.key)}


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


LIST_LIMIT = 1000


@bp.get("/api/keys")
@require_identity()
def list_keys():
    every_user = request.args.get("all") in ("1", "true")
    limit = request.args.get("limit", str(LIST_LIMIT))
    if not limit.isdigit() or not 1 <= int(limit) <= LIST_LIMIT:
        raise ApiError(400, "invalid_request", f"limit is a whole number from 1 to {LIST_LIMIT}.")
    keys = services().keys.list_as(current_identity(), request.args.get("user"), every_user=every_user,
                                   limit=int(limit) + 1)
    return {"keys": [key_json(k) for k in keys[:int(limit)]], "truncated": len(keys) > int(limit)}


@bp.post("/api/keys")
@require_identity()
def mint_key():
    body = jsonapi.json_object()
    # `allowed_cidrs` is how answers name the ranges; a request may use either name, not both.
    jsonapi.only_fields(body, "name", "scopes", "expires_in_days", "cidrs", "allowed_cidrs", "user")
    if "cidrs" in body and "allowed_cidrs" in body:
        raise ApiError(400, "invalid_request", 'Send the address ranges once, as "cidrs" or as "allowed_cidrs".')
    name = jsonapi.string(body, "name", max_length=200)
    scopes = jsonapi.string_list(body, "scopes", max_items=50, max_length=64)
    days = jsonapi.integer(body, "expires_in_days", required=False, minimum=1, maximum=MAX_EXPIRY_DAYS)
    ranges = "allowed_cidrs" if "allowed_cidrs" in body else "cidrs"
    cidrs = jsonapi.string_list(body, ranges, max_items=MAX_CIDRS, max_length=64) or []
    username = jsonapi.string(body, "user", required=False, max_length=150)
    minted = services().keys.mint_as(
        current_identity(),
        username=username,
        name=name,
        scopes=scopes,
        expires_in=timedelta(days=days) if days else None,
        cidrs=cidrs,
    )
    return minted_json(minted), 201


@bp.get("/api/keys/<key_id>")
@require_identity()
def show_key(key_id: str):
    return key_json(services().keys.manageable(current_identity(), key_id))


@bp.get("/api/keys/<key_id>/audit")
@require_identity()
def key_audit(key_id: str):
    keys = services().keys
    key = keys.manageable(current_identity(), key_id)
    return {"key_id": key.key_id, "events": [event_json(e) for e in keys.history(key.key_id)]}


@bp.post("/api/keys/<key_id>/rotate")
@require_identity()
def rotate_key(key_id: str):
    body = jsonapi.json_object()
    grace = jsonapi.integer(body, "grace_seconds", required=False, minimum=0, maximum=MAX_GRACE_SECONDS, default=0)
    minted = services().keys.rotate_as(current_identity(), key_id, grace_seconds=grace)
    return minted_json(minted)


@bp.delete("/api/keys/<key_id>")
@require_identity()
def revoke_key(key_id: str):
    key = services().keys.revoke_as(current_identity(), key_id)
    return key_json(key)


def event_json(event) -> dict:
    return {
        "at": iso(event.at),
        "action": event.action,
        "actor": event.actor,
        "target": event.target,
        "outcome": event.outcome,
        "ip": event.ip,
        "details": event.details,
    }
