"""The browser and JSON logins, end to end: the password, the second step (a TOTP code, a
recovery code, or TOTP set-up when policy requires it), the session, logout."""

from __future__ import annotations

from flask import make_response, redirect, render_template, request

from .. import jsonapi
from ..crypto import random_token
from ..errors import ApiError, csrf_failed
from ..identity import Via, current_identity, identity_or_none, require_identity
from ..metrics import LOGINS
from ..passkeys.forms import PasskeyLoginForm
from ..passkeys.service import ChallengeExpired, PasskeyError, binding_of_browser
from ..throttle import Bucket, TooManyAttempts
from ..totp.forms import CodeForm, SecondFactorForm
from ..totp.service import SecondFactorError
from ..web import (
    clear_pending_login_cookie,
    clear_session_cookie,
    client_ip,
    passkey_login_cookie_name,
    pending_login_cookie_name,
    safe_next,
    services,
    set_pending_login_cookie,
    set_session_cookie,
)
from .acr import wants_second_factor
from .blueprint import bp, json_response
from .forms import LoginForm, PostOnlyForm
from .login import (
    EnrolmentRequired,
    LoginResult,
    SecondFactorRequired,
    passkey_only,
    password_and_totp,
    password_only,
)
from .service import InvalidCredentials, OpenedSession, identity_from_session


def open_session(user, *, auth_method: str, amr, acr: str = "", **kwargs) -> OpenedSession:
    """A new session for a login; the session this browser had until now ends (ASVS 7.2.4)."""
    svc = services()
    previous = identity_or_none()  # before anything is written: it may refuse (a throttled bad key beside)
    opened = svc.sessions.open(
        user,
        auth_method=auth_method,
        amr=amr,
        acr=acr,
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent", ""),
        **kwargs,
    )
    svc.audit.record("session.open", actor=f"user:{user.username}", target=f"session:{opened.record.id}",
                     details={"auth_method": auth_method}, commit=True)
    if previous is not None and previous.via == Via.SESSION and previous.session is not None:
        svc.sessions.replace(previous.session, opened.record)
    LOGINS.labels(auth_method, "success").inc()
    return opened


def open_login_session(result: LoginResult) -> OpenedSession:
    return open_session(result.user, auth_method=result.auth_method, amr=list(result.amr), acr=result.acr,
                        key_id=result.key_id, scopes=result.scopes)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    next_url = safe_next(request.values.get("next"))
    error = None
    status = 200
    headers = {}
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                user = services().logins.check_password(form.username.data, form.password.data, client_ip())
            except InvalidCredentials as exc:
                LOGINS.labels("password", "failure").inc()
                error, status = str(exc), 401
            except TooManyAttempts as exc:
                error, status, headers = str(exc), 429, {"Retry-After": str(exc.retry_after)}
            else:
                return after_password(user, next_url)
        else:
            # Missing fields are named beside the fields themselves; only a stale form needs a banner.
            status = 400
            if form.csrf_token.errors:
                error = "The form expired; please try again."
    form.next.data = next_url
    return render_template("login.html", form=form, error=error), status, headers


def after_password(user, next_url: str):
    """The password was right: log in, or hand over to the second-factor step (server-side, 5 minutes)."""
    logins = services().logins
    step = logins.next_step(user, second_factor_wanted=wants_second_factor(next_url))
    if step is None:
        opened = open_login_session(password_only(user))
        return set_session_cookie(redirect(next_url, 303), opened)
    handle = logins.begin_pending(user, step, next_url)
    target = "/login/totp" if step == "totp" else "/login/totp/setup"
    return set_pending_login_cookie(redirect(target, 303), handle)


# -- /login/passkey: passwordless, a discoverable passkey with user verification ------------------------


@bp.post("/login/passkey")
def passwordless():
    """Without an answer: hand out a challenge (bound to a cookie of this browser) on a page whose
    script asks the authenticator. With one: check it and sign in with both factors."""
    form = PasskeyLoginForm()
    next_url = safe_next(request.values.get("next"))
    svc = services()
    if not form.validate_on_submit():
        return render_template("passkeys/login.html", form=form, options=None, next_url=next_url,
                               error="The form expired; please try again."), 400
    cookie_name = passkey_login_cookie_name()
    if not form.credential.data:
        try:
            svc.throttle.consume(Bucket("passkey-start:address", client_ip()[:45] or "-"))
        except TooManyAttempts as exc:
            return render_template("passkeys/login.html", form=form, options=None, next_url=next_url,
                                   error=str(exc)), 429, {"Retry-After": str(exc.retry_after)}
        handle = random_token(32)
        options = svc.passkeys.authentication_options(binding_of_browser(handle), None)
        page = render_template("passkeys/login.html", form=PasskeyLoginForm(formdata=None), options=options,
                               next_url=next_url, error=None)
        return set_pending_login_cookie(make_response(page), handle, name=cookie_name)
    handle = request.cookies.get(cookie_name) or ""
    try:
        if not handle or len(handle) > 128:
            raise ChallengeExpired()
        assertion = svc.passkeys.passwordless(binding_of_browser(handle), form.credential.data, address=client_ip())
    except (PasskeyError, TooManyAttempts) as exc:
        status = exc.status
        page = render_template("passkeys/login.html", form=form, options=None, next_url=next_url,
                               error=exc.description)
        return clear_pending_login_cookie(make_response(page, status, exc.headers), name=cookie_name)
    opened = open_login_session(passkey_only(assertion))
    response = set_session_cookie(redirect(next_url, 303), opened)
    return clear_pending_login_cookie(response, name=cookie_name)


@bp.post("/logout")
def logout():
    form = PostOnlyForm()
    if not form.validate_on_submit():
        raise csrf_failed()
    identity = identity_or_none()
    if identity and identity.session:
        services().sessions.revoke(identity.session)
    return clear_session_cookie(redirect("/login"))


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
        return redirect("/login/totp/setup") if pending.purpose == "enrol" else restart_login()
    form = SecondFactorForm()
    error, status, headers = None, 200, {}
    logins = services().logins
    if request.method == "POST":
        if not form.validate_on_submit():
            error, status = "The form expired; please try again.", 400
        elif form.credential.data:
            try:
                result = logins.second_factor_passkey(pending, form.credential.data, address=client_ip())
            except PasskeyError as exc:
                error, status = exc.description, 401
            except TooManyAttempts as exc:
                error, status, headers = str(exc), 429, {"Retry-After": str(exc.retry_after)}
            else:
                return complete_login(pending, result, redirect(pending.next_url))
        elif not (form.code.data or form.recovery_code.data):
            error, status = "Enter the code from your authenticator app, or a recovery code.", 400
        else:
            try:
                result = logins.second_factor(
                    pending.user, totp_code=form.code.data, recovery_code=form.recovery_code.data,
                    address=client_ip(),
                )
            except SecondFactorError as exc:
                error, status = exc.description, 401
            except TooManyAttempts as exc:
                error, status, headers = str(exc), 429, {"Retry-After": str(exc.retry_after)}
            else:
                return complete_login(pending, result, redirect(pending.next_url))
    user = pending.user
    has_totp = services().totp.is_enrolled(user)
    options = None
    if services().passkeys.has_passkey(user):
        options = services().passkeys.authentication_options(f"pending:{pending.id}", user)
    page = render_template("totp/login_totp.html", form=form, error=error, has_totp=has_totp,
                           passkey_options=options)
    return page, status, headers


@bp.route("/login/totp/setup", methods=["GET", "POST"])
def login_setup():
    """Policy requires TOTP and the user has none: set it up before the login completes."""
    pending = pending_login()
    if pending is None:
        return restart_login()
    if pending.purpose != "enrol":
        return redirect("/login/totp") if pending.purpose == "totp" else restart_login()
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


@bp.post("/api/session/login")
def api_login():
    body = jsonapi.json_object()
    username = jsonapi.string(body, "username", max_length=200)
    password = jsonapi.string(body, "password", max_length=1024)
    if services().keys.is_key_login(username):
        opened = key_login(username, password)
    else:
        opened = open_login_session(json_password_login(body, username, password))
    identity = identity_from_session(opened.record)
    return set_session_cookie(json_response({"session_id": opened.record.id, **identity.as_json()}), opened)


def json_password_login(body: dict, username: str, password: str) -> LoginResult:
    """Password (and TOTP code or recovery code when the account has TOTP) to a LoginResult, or ApiError."""
    totp_code = jsonapi.string(body, "totp_code", required=False, max_length=64)
    recovery_code = jsonapi.string(body, "recovery_code", required=False, max_length=64)
    pending = jsonapi.string(body, "pending_login", required=False, max_length=128)
    webauthn = body.get("webauthn")
    if webauthn is not None and not isinstance(webauthn, dict):
        raise ApiError(400, "invalid_request", '"webauthn" must be the object the platform\'s passkey API '
                                               "answered (PublicKeyCredential.toJSON()).")
    try:
        return services().logins.password_login(
            username, password, client_ip(), totp_code=totp_code, recovery_code=recovery_code,
            webauthn=webauthn, pending_login=pending,
        )
    except InvalidCredentials as exc:
        LOGINS.labels("password", "failure").inc()
        raise ApiError(401, "invalid_credentials", str(exc)) from None
    except SecondFactorRequired as exc:
        raise ApiError(401, "totp_required", str(exc)) from None
    except EnrolmentRequired as exc:
        raise ApiError(403, "totp_enrolment_required", str(exc)) from None
    except SecondFactorError as exc:
        LOGINS.labels("password+totp", "failure").inc()
        raise ApiError(401, exc.error, exc.description) from None
    except PasskeyError as exc:
        LOGINS.labels("password+passkey", "failure").inc()
        raise ApiError(401, exc.error, exc.description) from None


def key_login(key_id: str, secret: str) -> OpenedSession:
    """An API key as username/password: a session as its owner, limited to its scopes, never asked for TOTP."""
    keys = services().keys
    verified = keys.authenticate(key_id, secret, ip=client_ip())
    opened = open_session(verified.user, auth_method="api_key", amr=[], key_id=verified.key_id,
                          scopes=sorted(verified.scopes))
    keys.bind_session(opened.record, verified)
    return opened


@bp.post("/api/session/logout")
@require_identity()
def api_logout():
    identity = current_identity()
    if identity.session:
        services().sessions.revoke(identity.session)
    return clear_session_cookie(json_response({"logged_out": True}))
