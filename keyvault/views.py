"""Server-rendered key pages: /account/keys for one's own keys, /admin/keys for every key."""

from __future__ import annotations

from datetime import timedelta

from flask import redirect, render_template, request, url_for

from authserver.accounts.forms import ConfirmForm
from authserver.errors import ApiError, csrf_failed
from authserver.web import services, signed_in

from .api import key_json
from .blueprint import bp
from .forms import MintKeyForm, RotateKeyForm
from .service import KeyForbidden, acts_as_admin, can_manage_keys

# The newest keys shown on a page; admins narrow the list by owner.
PAGE_LIMIT = 500


def page_identity(admin: bool):
    """The signed-in browser user allowed on this page (the one page guard, then the vault's own rules)."""
    identity = signed_in(full=False)
    if not can_manage_keys(identity):
        raise KeyForbidden("Managing keys needs a password login; a key login cannot manage keys.")
    if admin and not acts_as_admin(identity):
        raise KeyForbidden("Only administrators see every key.")
    return identity


def render_keys(identity, *, admin: bool, mint_form=None, minted=None, revoke_form=None, revoke_failed=None,
                status=200):
    keys = services().keys
    filter_user = request.args.get("user", "").strip()[:150] if admin else ""
    if admin:
        rows = keys.list_as(identity, filter_user or None, every_user=not filter_user, limit=PAGE_LIMIT + 1)
        catalogue = keys.catalogue
    else:
        rows = keys.list_as(identity, limit=PAGE_LIMIT + 1)
        catalogue = keys.scopes_for(identity.user)
    mint_form = mint_form or MintKeyForm(formdata=None)
    mint_form.scopes.choices = list(catalogue)
    if mint_form.scopes.data is None:
        mint_form.scopes.data = [s for s in catalogue if s != "admin"]
    if admin and filter_user and not mint_form.user.data:
        mint_form.user.data = filter_user
    return render_template(
        "keyvault/keys.html",
        identity=identity,
        admin=admin,
        keys=[key_json(k) for k in rows[:PAGE_LIMIT]],
        truncated=len(rows) > PAGE_LIMIT,
        filter_user=filter_user,
        mint_form=mint_form,
        rotate_form=RotateKeyForm(formdata=None),
        revoke_form=revoke_form or ConfirmForm(formdata=None),
        revoke_failed=revoke_failed,
        minted=minted,
        base=url_for("keyvault.admin_keys") if admin else url_for("keyvault.account_keys"),
    ), status


def keys_page(admin: bool):
    identity = page_identity(admin)
    return render_keys(identity, admin=admin)


def mint_from_form(admin: bool):
    identity = page_identity(admin)
    keys = services().keys
    form = MintKeyForm()
    form.scopes.choices = list(keys.catalogue if admin else keys.scopes_for(identity.user))
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        return render_keys(identity, admin=admin, mint_form=form, status=400)
    days = form.expires_in_days.data
    minted = keys.mint_as(
        identity,
        username=(form.user.data or None) if admin else None,
        name=form.name.data,
        scopes=form.scopes.data,
        expires_in=timedelta(days=days) if days else None,
        cidrs=(form.cidrs.data or "").replace(",", "\n").split(),
    )
    # Rendered, never redirected: the secret exists only in this one response.
    return render_keys(identity, admin=admin, minted=minted, status=201)


def rotate_from_form(admin: bool, key_id: str):
    identity = page_identity(admin)
    form = RotateKeyForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        raise ApiError(400, "invalid_request", "The grace period is a whole number of seconds from 0 to 30 days.")
    minted = services().keys.rotate_as(identity, key_id, grace_seconds=form.grace_seconds.data or 0)
    return render_keys(identity, admin=admin, minted=minted)


def revoke_from_form(admin: bool, key_id: str):
    identity = page_identity(admin)
    form = ConfirmForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        # Revoking cannot be undone: the row's "Yes, revoke" box must be ticked.
        return render_keys(identity, admin=admin, revoke_form=form, revoke_failed=key_id, status=400)
    key = services().keys.revoke_as(identity, key_id)
    target = url_for("keyvault.admin_keys", user=key.user.username) if admin else url_for("keyvault.account_keys")
    return redirect(target)


@bp.get("/account/keys")
def account_keys():
    return keys_page(admin=False)


@bp.post("/account/keys")
def account_mint():
    return mint_from_form(admin=False)


@bp.post("/account/keys/<key_id>/rotate")
def account_rotate(key_id: str):
    return rotate_from_form(False, key_id)


@bp.post("/account/keys/<key_id>/revoke")
def account_revoke(key_id: str):
    return revoke_from_form(False, key_id)


@bp.get("/admin/keys")
def admin_keys():
    return keys_page(admin=True)


@bp.post("/admin/keys")
def admin_mint():
    return mint_from_form(admin=True)


@bp.post("/admin/keys/<key_id>/rotate")
def admin_rotate(key_id: str):
    return rotate_from_form(True, key_id)


@bp.post("/admin/keys/<key_id>/revoke")
def admin_revoke(key_id: str):
    return revoke_from_form(True, key_id)


@bp.get("/admin/keys/<key_id>")
def admin_key_audit(key_id: str):
    identity = page_identity(admin=True)
    keys = services().keys
    key = keys.manageable(identity, key_id)
    return render_template(
        "keyvault/key_audit.html",
        key=key_json(key),
        events=keys.history(key.key_id),
    )
