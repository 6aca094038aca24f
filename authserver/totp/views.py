"""TOTP set-up pages and API: on the account page, over JSON, and the admin reset (the login's
second step is the accounts package's)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request

from .. import jsonapi
from ..accounts.forms import PostOnlyForm
from ..accounts.models import User
from ..errors import ApiError
from ..identity import Identity, Via, current_identity, require_identity
from ..throttle import TooManyAttempts
from ..web import client_ip, services, signed_in
from .forms import CodeForm
from .service import SecondFactorError

bp = Blueprint("totp", __name__)


@bp.app_context_processor
def _totp_status():
    """`totp_status(user)` for the account page's two-factor section."""
    return {"totp_status": lambda user: services().totp.status(user)}


# -- /account/totp: the signed-in user's own set-up ---------------------------


@bp.get("/account/totp")
def account_totp():
    user = signed_in().user
    return render_account_page(user)


def render_account_page(user: User, *, error: str | None = None, status: int = 200, headers=None):
    totp = services().totp
    page = render_template(
        "totp/account.html",
        status=totp.status(user),
        enrolment=totp.pending_enrolment(user),
        start_form=PostOnlyForm(formdata=None),
        form=CodeForm(formdata=None),
        error=error,
    )
    return page, status, headers or {}


@bp.post("/account/totp/start")
def account_start():
    identity = signed_in()
    user = identity.user
    if not PostOnlyForm().validate_on_submit():
        return render_account_page(user, error="The form expired; please try again.", status=400)
    current = (request.form.get("code") or "")[:64]
    try:
        services().totp.begin_enrolment(user, actor=identity.actor, address=client_ip(),
                                        proof=code_or_recovery(current) if current else None)
    except SecondFactorError as exc:
        return render_account_page(user, error=exc.description, status=400)
    except TooManyAttempts as exc:
        return render_account_page(user, error=str(exc), status=429, headers={"Retry-After": str(exc.retry_after)})
    return redirect("/account/totp")


@bp.post("/account/totp/<action>")
def account_action(action: str):
    identity = signed_in()
    user = identity.user
    if action not in ("confirm", "recovery-codes", "disable"):
        raise ApiError(404, "not_found", "There is nothing at this address; check the URL.")
    form = CodeForm()
    if not form.validate_on_submit():
        return render_account_page(user, error="Enter the code your authenticator app shows.", status=400)
    totp = services().totp
    code = form.code.data
    try:
        if action == "confirm":
            codes = totp.confirm_enrolment(user, code, actor=identity.actor, address=client_ip())
        elif action == "recovery-codes":
            codes = totp.regenerate_recovery_codes(user, **code_or_recovery(code), actor=identity.actor,
                                                   address=client_ip())
        else:
            totp.disable(user, **code_or_recovery(code), actor=identity.actor, address=client_ip())
            return redirect("/account/totp")
    except SecondFactorError as exc:
        return render_account_page(user, error=exc.description, status=400)
    except TooManyAttempts as exc:
        return render_account_page(user, error=str(exc), status=429, headers={"Retry-After": str(exc.retry_after)})
    return render_template("totp/recovery_codes.html", codes=codes, continue_url="/account/totp")


def code_or_recovery(value: str) -> dict:
    """One field takes either: six digits are a TOTP code, anything else a recovery code."""
    compact = "".join(value.split())
    if compact.isdigit() and len(compact) <= 8:
        return {"code": compact}
    return {"recovery_code": value}


# -- JSON: /api/me/totp --------------------------------------------------------


def owner() -> Identity:
    """TOTP is managed from a password session only: never by an API key or a third party's token."""
    identity = current_identity()
    if identity.via != Via.SESSION or identity.key_id:
        raise ApiError(403, "forbidden", "Manage two-factor authentication from a session opened with your password.")
    return identity


def codes_from(body: dict) -> dict:
    code = jsonapi.string(body, "code", required=False, max_length=64)
    recovery_code = jsonapi.string(body, "recovery_code", required=False, max_length=64)
    if not code and not recovery_code:
        raise ApiError(
            400, "invalid_request", 'Send the current code as "code" (or a recovery code as "recovery_code").'
        )
    return {"code": code, "recovery_code": recovery_code}


@bp.get("/api/me/totp")
@require_identity()
def api_status():
    return services().totp.status(owner().user).as_json()


@bp.post("/api/me/totp")
@require_identity()
def api_enrol():
    identity = owner()
    body = jsonapi.json_object() if request.content_length else {}
    totp = services().totp
    proof = codes_from(body) if totp.is_enrolled(identity.user) else None
    enrolment = totp.begin_enrolment(identity.user, actor=identity.actor, proof=proof, address=client_ip())
    return {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri, "qr_svg": enrolment.qr_svg}


@bp.post("/api/me/totp/confirm")
@require_identity()
def api_confirm():
    identity = owner()
    code = jsonapi.string(jsonapi.json_object(), "code", max_length=64)
    codes = services().totp.confirm_enrolment(identity.user, code, actor=identity.actor, address=client_ip())
    return {"enabled": True, "recovery_codes": codes}


@bp.post("/api/me/totp/recovery-codes")
@require_identity()
def api_regenerate():
    identity = owner()
    given = codes_from(jsonapi.json_object())
    codes = services().totp.regenerate_recovery_codes(identity.user, **given, actor=identity.actor, address=client_ip())
    return {"recovery_codes": codes}


@bp.delete("/api/me/totp")
@require_identity()
def api_disable():
    identity = owner()
    given = codes_from(jsonapi.json_object())
    services().totp.disable(identity.user, **given, actor=identity.actor, address=client_ip())
    return {"enabled": False}


@bp.post("/api/admin/users/<username>/passkeys/reset")
@require_identity(admin=True)
def api_admin_passkeys_reset(username: str):
    user = services().accounts.find(username)
    if user is None:
        raise ApiError(404, "user_not_found", f'There is no user "{username[:150]}"; check the username.')
    removed = services().passkeys.reset(user, actor=current_identity().actor)
    return {"username": user.username, "reset": True, "removed": removed}


@bp.post("/api/admin/users/<username>/totp/reset")
@require_identity(admin=True)
def api_admin_reset(username: str):
    user = services().accounts.find(username)
    if user is None:
        raise ApiError(404, "user_not_found", f'There is no user "{username[:150]}"; check the username.')
    had_totp = services().totp.reset(user, actor=current_identity().actor)
    return {"username": user.username, "reset": True, "had_totp": had_totp}
