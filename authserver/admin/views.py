"""The admin console: /admin (users, clients, signing keys, audit log; keys live in keyvault's /admin/keys).

Every page calls `signed_in(admin=True)`: logged out goes to the login page,
a non-admin gets 403. Every change is a CSRF-checked form, audited by the service.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from ..accounts.forms import ConfirmForm, PostOnlyForm
from ..accounts.models import User
from ..accounts.service import AccountError
from ..errors import ApiError, DomainError, csrf_failed
from ..extensions import db
from ..oidc.claims import EXTRA_CLAIM_KINDS
from ..oidc.clients import SECRET_METHODS, ClientError
from ..web import services, signed_in
from .blueprint import bp
from .forms import (
    GROUPS_HINT,
    AuditFilterForm,
    ClientForm,
    CreateUserForm,
    EditUserForm,
)
from .service import AdminError, AuditFilter, parse_groups


def admin_service():
    return services().admin


# -- overview ----------------------------------------------------------------------


@bp.get("/admin")
def overview():
    identity = signed_in(admin=True)
    counts = admin_service().counts()
    recent = admin_service().audit_page(AuditFilter(), limit=10).events
    return render_template("admin/overview.html", identity=identity, counts=counts, recent=recent)


# -- users -------------------------------------------------------------------------


def page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 1


@bp.get("/admin/users")
def users():
    identity = signed_in(admin=True)
    return render_users(identity, CreateUserForm(formdata=None))


def render_users(identity, create_form, status: int = 200):
    query = request.args.get("q", "").strip()[:200]
    page = admin_service().search_users(query, page_number())
    mail = services().mail
    return render_template("admin/users.html", identity=identity, page=page, query=query,
                           form=create_form, groups_hint=GROUPS_HINT, mail_enabled=mail.enabled,
                           invitations=list(mail.pending_invitations().values()),
                           post_form=PostOnlyForm(formdata=None)), status


@bp.post("/admin/users")
def create_user():
    identity = signed_in(admin=True)
    form = CreateUserForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        return render_users(identity, form, 400)
    try:
        user, generated = admin_service().create_user(
            actor=identity.actor, username=form.username.data, email=(form.email.data or "").strip(),
            name=(form.name.data or "").strip(), groups=parse_groups(form.groups.data or ""),
            is_admin=form.is_admin.data, password=form.password.data or None, invite=form.invite.data,
        )
    except AccountError as exc:
        beside(form, exc, default="username")
        return render_users(identity, form, exc.status)
    if form.invite.data:
        flash(f'User "{user.username}" created; an invitation is on its way to {user.email}.')
        return redirect(url_for("admin.user", user_id=user.id))
    if generated is None:
        flash(f'User "{user.username}" created.')
        return redirect(url_for("admin.user", user_id=user.id))
    # Rendered, not redirected: the generated password exists only in this response.
    return render_user(identity, user, generated_password=generated, status=201)


def beside(form, exc: DomainError, *, default: str) -> None:
    """A refused change's message beside the form field it is about (the error names it)."""
    field = getattr(form, exc.field or "", None) or getattr(form, default)
    field.errors = [exc.description]


def find_user(user_id: int) -> User:
    user = admin_service().get_user(user_id)
    if user is None:
        raise ApiError(404, "user_not_found", "There is no such user; it may have been removed. Search the user list.")
    return user


@bp.get("/admin/users/<int:user_id>")
def user(user_id: int):
    identity = signed_in(admin=True)
    return render_user(identity, find_user(user_id))


def render_user(identity, user: User, *, edit_form=None, confirm_form=None, confirm_for: str = "",
                generated_password: str | None = None, status: int = 200):
    svc = services()
    if edit_form is None:
        edit_form = EditUserForm(formdata=None, name=user.name, email=user.email,
                                 email_verified=bool(user.email_verified),
                                 groups=", ".join(user.groups or []), is_admin=user.is_admin)
        edit_form.fill(user)
    page = render_template(
        "admin/user.html",
        identity=identity,
        user=user,
        edit_form=edit_form,
        confirm_form=confirm_form or ConfirmForm(formdata=None),
        confirm_for=confirm_for,
        post_form=PostOnlyForm(formdata=None),
        totp=svc.totp.status(user),
        passkeys=svc.passkeys.list_for(user),
        sessions=admin_service().sessions_of(user),
        keys=svc.keys.list_keys(user, limit=20),
        generated_password=generated_password,
        groups_hint=GROUPS_HINT,
        mail_enabled=svc.mail.enabled,
        invitation=svc.mail.pending_invitations().get(user.id),
    )
    return page, status


@bp.post("/admin/users/<int:user_id>")
def update_user(user_id: int):
    identity = signed_in(admin=True)
    user = find_user(user_id)
    form = EditUserForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        return render_user(identity, user, edit_form=form, status=400)
    try:
        changed = admin_service().update_user(
            identity.user, user, name=(form.name.data or "").strip(), email=(form.email.data or "").strip(),
            groups=parse_groups(form.groups.data or ""), is_admin=form.is_admin.data,
            email_verified=form.email_verified.data, claims=form.claims(),
        )
    except AccountError as exc:
        beside(form, exc, default="name")
        db.session.rollback()
        return render_user(identity, user, edit_form=form, status=400)
    flash(f"Saved: {', '.join(changed)}." if changed else "Nothing to change.")
    return redirect(url_for("admin.user", user_id=user.id))


# Destructive actions: the form must carry a ticked "confirm" box.
CONFIRMED_ACTIONS = ("disable", "reset-password", "reset-totp", "reset-passkeys", "revoke-sessions")


@bp.post("/admin/users/<int:user_id>/<action>")
def user_action(user_id: int, action: str):
    identity = signed_in(admin=True)
    if action not in CONFIRMED_ACTIONS + ("enable", "resend-invitation", "cancel-invitation"):
        abort(404)
    user = find_user(user_id)
    admin = admin_service()
    if action in ("resend-invitation", "cancel-invitation"):
        if not PostOnlyForm().validate_on_submit():
            raise csrf_failed()
        if action == "resend-invitation":
            admin.resend_invitation(identity.user, user)
            flash(f"A new invitation is on its way to {user.email}; the earlier link no longer works.")
        else:
            admin.cancel_invitation(identity.user, user)
            flash(f'The invitation of "{user.username}" is cancelled: its link no longer works.')
        return redirect(url_for("admin.user", user_id=user.id))
    if action == "enable":
        if not PostOnlyForm().validate_on_submit():
            raise csrf_failed()
        admin.set_disabled(identity.user, user, False)
        flash(f'"{user.username}" can sign in again.')
        return redirect(url_for("admin.user", user_id=user.id))
    form = ConfirmForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        return render_user(identity, user, confirm_form=form, confirm_for=action, status=400)
    try:
        if action == "disable":
            admin.set_disabled(identity.user, user, True)
            flash(f'"{user.username}" is disabled and signed out everywhere.')
        elif action == "reset-totp":
            had = admin.reset_totp(identity.user, user)
            flash(f'Two-factor authentication of "{user.username}" reset.' if had
                  else f'"{user.username}" had no two-factor authentication; nothing to reset.')
        elif action == "reset-passkeys":
            removed = admin.reset_passkeys(identity.user, user)
            flash(f'Removed {removed} passkey{"s" if removed != 1 else ""} of "{user.username}".')
        elif action == "revoke-sessions":
            count = admin.revoke_sessions(identity.user, user)
            flash(f'Signed "{user.username}" out of {count} session{"s" if count != 1 else ""}.')
        else:
            password = admin.reset_password(identity.user, user)
            return render_user(identity, user, generated_password=password)
    except AdminError as exc:
        form.confirm.errors = [str(exc)]
        return render_user(identity, user, confirm_form=form, confirm_for=action, status=400)
    return redirect(url_for("admin.user", user_id=user.id))


# -- audit log ---------------------------------------------------------------------


@bp.get("/admin/audit")
def audit():
    identity = signed_in(admin=True)
    form = AuditFilterForm(request.args)
    status = 200
    if form.validate():
        filters = AuditFilter(
            actor=(form.actor.data or "").strip(), action=(form.action.data or "").strip(),
            target=(form.target.data or "").strip(), since=form.since.moment, until=form.until.moment,
        )
        page = admin_service().audit_page(filters, before_id=form.before.data)
    else:
        page, status = None, 400
    older = None
    if page is not None and page.next_before:
        args = {k: v for k, v in request.args.items() if k != "before" and v}
        older = url_for("admin.audit", **args, before=page.next_before)
    newest = url_for("admin.audit", **{k: v for k, v in request.args.items() if k != "before" and v})
    return render_template("admin/audit.html", identity=identity, form=form, page=page, older=older,
                           newest=newest, paged=bool(form.before.data)), status


# -- OAuth / OIDC clients ----------------------------------------------------------


def registry():
    return services().oidc.clients


def lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@bp.get("/admin/clients")
def clients():
    identity = signed_in(admin=True)
    return render_clients(identity, ClientForm(formdata=None))


def render_clients(identity, form, error: str | None = None, status: int = 200):
    return render_template("admin/clients.html", identity=identity, clients=registry().list_registered(),
                           form=form, error=error, claim_kinds=EXTRA_CLAIM_KINDS), status


@bp.post("/admin/clients")
def create_client():
    identity = signed_in(admin=True)
    form = ClientForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        return render_clients(identity, form, status=400)
    jwks = form.jwks_value()
    if form.jwks.errors:
        return render_clients(identity, form, status=400)
    method = form.token_endpoint_auth_method.data
    try:
        created = registry().create(
            name=form.name.data, redirect_uris=lines(form.redirect_uris.data), public=method == "none",
            trusted=form.is_trusted.data, first_party=form.is_first_party.data,
            introspect=form.can_introspect.data, pkce_required=not form.no_pkce.data, broker=form.is_broker.data,
            require_par=form.require_par.data, require_dpop=form.require_dpop.data,
            allow_missing_state=form.allow_missing_state.data, scope=form.scope.data or "",
            grant_types=form.grant_types.data or [], token_endpoint_auth_method=method,
            id_token_signed_response_alg=form.id_token_signed_response_alg.data,
            access_token_format=form.access_token_format.data, extra_claims=lines(form.extra_claims.data),
            jwks=jwks, actor=identity.actor,
        )
    except ClientError as exc:
        db.session.rollback()
        beside(form, exc, default="name")
        return render_clients(identity, form, status=400)
    if created.client_secret is None:
        flash(f'Client "{created.row.name}" created.')
        return redirect(url_for("admin.client", client_id=created.row.client_id))
    return render_client(identity, created.row, secret=created.client_secret, status=201)


def find_client(client_id: str):
    row = registry().registered(client_id)
    if row is None:
        raise ApiError(404, "client_not_found",
                       "There is no such client; it may have been deleted. See the client list.")
    return row


@bp.get("/admin/clients/<client_id>")
def client(client_id: str):
    identity = signed_in(admin=True)
    return render_client(identity, find_client(client_id))


def render_client(
    identity, row, *, secret: str | None = None, confirm_form=None, confirm_for: str = "", status: int = 200
):
    page = render_template(
        "admin/client.html",
        identity=identity,
        client=row,
        secret=secret,
        confirm_form=confirm_form or ConfirmForm(formdata=None),
        confirm_for=confirm_for,
        has_secret=row.token_endpoint_auth_method in SECRET_METHODS,
    )
    return page, status


@bp.post("/admin/clients/<client_id>/<action>")
def client_action(client_id: str, action: str):
    identity = signed_in(admin=True)
    if action not in ("rotate-secret", "delete"):
        abort(404)
    row = find_client(client_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        return render_client(identity, row, confirm_form=form, confirm_for=action, status=400)
    try:
        if action == "rotate-secret":
            secret = registry().rotate_secret(row.client_id, actor=identity.actor)
            return render_client(identity, row, secret=secret)
        registry().delete(row.client_id, actor=identity.actor)
    except ClientError as exc:
        form.confirm.errors = [str(exc)]
        return render_client(identity, row, confirm_form=form, confirm_for=action, status=400)
    flash(f'Client "{row.name}" deleted; its tokens no longer work.')
    return redirect(url_for("admin.clients"))


# -- signing keys ------------------------------------------------------------------


@bp.get("/admin/signing-keys")
def signing_keys():
    identity = signed_in(admin=True)
    return render_signing_keys(identity)


def render_signing_keys(identity, form=None, status: int = 200):
    return render_template(
        "admin/signing_keys.html",
        identity=identity,
        keys=admin_service().signing_keys(),
        form=form or ConfirmForm(formdata=None),
        now=services().clock.now(),
    ), status


@bp.post("/admin/signing-keys/rotate")
def rotate_signing_keys():
    identity = signed_in(admin=True)
    form = ConfirmForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            raise csrf_failed()
        return render_signing_keys(identity, form, 400)
    rotated = admin_service().rotate_signing_keys(identity.user)
    switch = min(r.signs_from for r in rotated).strftime("%H:%M:%S")
    flash(f"New signing keys: {', '.join(r.kid for r in rotated)}. Published now, they sign from {switch} UTC, once "
          "clients' cached key sets know them; the old ones stay published until their tokens expire.")
    return redirect(url_for("admin.signing_keys"))
