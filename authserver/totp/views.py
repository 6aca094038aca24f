"""Second-factor pages and API: /login/totp, TOTP set-up on the account page and over JSON, admin reset."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request

from .. import jsonapi
from ..accounts.forms import PostOnlyForm
from ..accounts.login import password_and_totp
from ..accounts.models import User
from ..accounts.views import (
    clear_pending_login_cookie,
    identity_or_none,
    open_login_session,
    pending_login_cookie_name,
    set_session_cookie,
    too_many_attempts,
)
from ..errors import ApiError
from ..identity import Identity, current_identity, require_identity
from ..throttle import TooManyAttempts
from ..web import client_ip, services
from .forms import CodeForm, SecondFactorForm
from .service import (
    CurrentFactorRequired,
    InvalidRecoveryCode,
    InvalidTotpCode,
    NoPendingEnrolment,
    SecondFactorError,
    TotpNotEnrolled,
    TotpRequiredByPolicy,
)

bp = Blueprint("totp", __name__)

# How each second-factor failure reads over the JSON API (login has its own: 401).
API_STATUS = {
    CurrentFactorRequired: 403,
    InvalidTotpCode: 400,
    InvalidRecoveryCode: 400,
    NoPendingEnrolment: 409,
    TotpNotEnrolled: 409,
    TotpRequiredByPolicy: 403,
}


@bp.app_context_processor
def _totp_status():
    """`totp_status(user)` for the account page's two-factor section."""
    return {"totp_status": lambda user: services().totp.status(user)}


def api_error(exc: SecondFactorError) -> ApiError:
    return ApiError(API_STATUS.get(type(exc), 400), exc.error, exc.description)


# -- /login/totp: the second step of a browser login --------------------------


def pending_login():
    return services().logins.find_pending(request.cookies.get(pending_login_cookie_name()))


def restart_login():
    return clear_pending_login_cookie(redirect("/login"))


@bp.route("/login/totp", methods=["GET", "POST"])
def login_totp():
    pending = pending_login()
    if pending is None:
        return restart_login()
    if pending.purpose != "totp":
        return redirect("/login/totp/setup")
    form = SecondFactorForm()
    error, status, headers = None, 200, {}
    if request.method == "POST":
        if not form.validate_on_submit():
            error, status = "The form expired; please try again.", 400
        elif not (form.code.data or form.recovery_code.data):
            error, status = "Enter the code from your authenticator app, or a recovery code.", 400
        else:
            try:
                result = services().logins.second_factor(
                    pending.user, totp_code=form.code.data, recovery_code=form.recovery_code.data,
                    address=client_ip(),
                )
            except SecondFactorError as exc:
                error, status = exc.description, 401
            except TooManyAttempts as exc:
                error, status, headers = str(exc), 429, {"Retry-After": str(exc.retry_after)}
            else:
                return complete_login(pending, result, redirect(pending.next_url))
    return render_template("totp/login_totp.html", form=form, error=error), status, headers


@bp.route("/login/totp/setup", methods=["GET", "POST"])
def login_setup():
    """Policy requires TOTP and the user has none: set it up before the login completes."""
    pending = pending_login()
    if pending is None:
        return restart_login()
    if pending.purpose != "enrol":
        return redirect("/login/totp")
    user = pending.user
    totp = services().totp
    form = CodeForm()
    error, status, headers = None, 200, {}
    if request.method == "POST":
        if not form.validate_on_submit():
            error, status = "Enter the code your authenticator app shows.", 400
        else:
            try:
                codes = totp.confirm_enrolment(user, form.code.data, actor=f"user:{user.username}",
                                               address=client_ip())
            except SecondFactorError as exc:
                error, status = exc.description, 400
            except TooManyAttempts as exc:
                error, status, headers = str(exc), 429, {"Retry-After": str(exc.retry_after)}
            else:
                page = render_template("totp/recovery_codes.html", codes=codes, continue_url=pending.next_url)
                return complete_login(pending, password_and_totp(user), page)
    enrolment = totp.begin_enrolment(user, actor=f"user:{user.username}", reuse_pending=True)
    page = render_template("totp/setup.html", enrolment=enrolment, form=form, error=error,
                           action="/login/totp/setup", required=True)
    return page, status, headers


def complete_login(pending, result, response):
    """Spend the pending login (once) and open the session; a raced or expired one starts over."""
    if not services().logins.finish_pending(pending):
        return restart_login()
    opened = open_login_session(result)
    return clear_pending_login_cookie(set_session_cookie(make_response(response), opened))


# -- /account/totp: the signed-in user's own set-up ---------------------------


def password_session_user():
    identity = identity_or_none()
    if identity is None or identity.via != "session" or identity.key_id:
        return None, None
    return identity, identity.user


@bp.get("/account/totp")
def account_totp():
    _, user = password_session_user()
    if user is None:
        return redirect("/login?next=/account/totp")
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
    identity, user = password_session_user()
    if user is None:
        return redirect("/login?next=/account/totp")
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
    identity, user = password_session_user()
    if user is None:
        return redirect("/login?next=/account/totp")
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
    if identity.via != "session" or identity.key_id:
        raise ApiError(403, "forbidden", "Manage two-factor authentication from a session opened with your password.")
    return identity


def codes_from(body: dict) -> dict:
    code = jsonapi.string(body, "code", required=False, max_length=64)
    recovery_code = jsonapi.string(body, "recovery_code", required=False, max_length=64)
    if not code and not recovery_code:
        raise ApiError(400, "invalid_request", 'Send the current code as "code" (or a recovery code as "recovery_code").')
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
    try:
        enrolment = totp.begin_enrolment(identity.user, actor=identity.actor, proof=proof, address=client_ip())
    except SecondFactorError as exc:
        raise api_error(exc) from None
    except TooManyAttempts as exc:
        raise too_many_attempts(exc) from None
    return {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri, "qr_svg": enrolment.qr_svg}


@bp.post("/api/me/totp/confirm")
@require_identity()
def api_confirm():
    identity = owner()
    code = jsonapi.string(jsonapi.json_object(), "code", max_length=64)
    try:
        codes = services().totp.confirm_enrolment(identity.user, code, actor=identity.actor, address=client_ip())
    except SecondFactorError as exc:
        raise api_error(exc) from None
    except TooManyAttempts as exc:
        raise too_many_attempts(exc) from None
    return {"enabled": True, "recovery_codes": codes}


@bp.post("/api/me/totp/recovery-codes")
@require_identity()
def api_regenerate():
    identity = owner()
    given = codes_from(jsonapi.json_object())
    try:
        codes = services().totp.regenerate_recovery_codes(identity.user, **given, actor=identity.actor,
                                                          address=client_ip())
    except SecondFactorError as exc:
        raise api_error(exc) from None
    except TooManyAttempts as exc:
        raise too_many_attempts(exc) from None
    return {"recovery_codes": codes}


@bp.delete("/api/me/totp")
@require_identity()
def api_disable():
    identity = owner()
    given = codes_from(jsonapi.json_object())
    try:
        services().totp.disable(identity.user, **given, actor=identity.actor, address=client_ip())
    except SecondFactorError as exc:
        raise api_error(exc) from None
    except TooManyAttempts as exc:
        raise too_many_attempts(exc) from None
    return {"enabled": False}


@bp.post("/api/admin/users/<username>/totp/reset")
@require_identity(admin=True)
def api_admin_reset(username: str):
    user = services().accounts.find(username)
    if user is None:
        raise ApiError(404, "user_not_found", f'There is no user "{username[:150]}"; check the username.')
    had_totp = services().totp.reset(user, actor=current_identity().actor)
    return {"username": user.username, "reset": True, "had_totp": had_totp}
