"""Browser login, JSON login, logout and "who am I"."""

from __future__ import annotations

import hashlib
import hmac

from flask import (
    Blueprint,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import (
    session as flask_session,
)

from .. import jsonapi
from ..errors import ApiError
from ..identity import AuthenticationFailed, current_identity, require_identity
from ..metrics import LOGINS
from ..throttle import TooManyAttempts
from ..totp.service import SecondFactorError
from ..web import client_ip, safe_next, services, signed_in
from .acr import wants_second_factor
from .forms import LoginForm, PasswordChangeForm, PostOnlyForm, ProfileForm
from .login import (
    PENDING_LOGIN_COOKIE,
    PENDING_LOGIN_LIFETIME,
    EnrolmentRequired,
    LoginResult,
    SecondFactorRequired,
    password_only,
)
from .service import (
    SESSION_COOKIE,
    InvalidCredentials,
    InvalidUserInput,
    OpenedSession,
    identity_from_session,
)

bp = Blueprint("accounts", __name__)
CSRF_FAILED = ApiError(400, "csrf_failed", "The form expired or was not sent from this site; reload the page and try again.")


def session_cookie_name() -> str:
    return services().settings.cookie_name(SESSION_COOKIE, shared_domain=True)


def pending_login_cookie_name() -> str:
    return services().settings.cookie_name(PENDING_LOGIN_COOKIE)


# Paths without forms: the JSON API (guarded by its content type and origin check), machines' endpoints.
NO_FORMS = ("/api/", "/.well-known/", "/healthz", "/readyz", "/metrics", "/static/", "/oauth/token",
            "/oauth/introspect", "/oauth/revoke", "/oauth/userinfo", "/oauth/jwks")


def bind_csrf_to_session() -> None:
    """A signed-in browser's form secret is derived from its SSO session, whatever its form
    cookie says: a token minted elsewhere (an attacker's own browser, a cookie planted by a
    sibling host) or before the login does not work on this session's forms."""
    if session_cookie_name() not in request.cookies or request.path.startswith(NO_FORMS):
        return
    identity = identity_or_none()
    if identity is None or identity.via != "session":
        return
    session_id = identity.extra.get("session_id") or identity.session.id
    key = services().settings.secret_key.encode()
    bound = hmac.new(key, b"csrf-secret:" + session_id.encode(), hashlib.sha256).hexdigest()
    if flask_session.get("csrf_token") != bound:
        flask_session["csrf_token"] = bound


def rotate_csrf_secret() -> None:
    """A new CSRF secret for the forms from now on (at login and logout): a token read before
    the login does not work after it."""
    flask_session.pop("csrf_token", None)


def set_session_cookie(response, opened: OpenedSession):
    settings = services().settings
    rotate_csrf_secret()
    response.set_cookie(
        session_cookie_name(),
        opened.cookie_value,
        max_age=settings.session_absolute_seconds,
        httponly=True,
        secure=settings.is_https,
        samesite="Lax",
        path="/",
        domain=settings.session_cookie_domain,
    )
    return response


def clear_session_cookie(response):
    settings = services().settings
    rotate_csrf_secret()
    response.delete_cookie(session_cookie_name(), path="/", domain=settings.session_cookie_domain, httponly=True,
                           samesite="Lax", secure=settings.is_https)
    return response


def open_session(user, *, auth_method: str, amr, acr: str = "", **kwargs) -> OpenedSession:
    """A new session for a login; the session this browser had until now ends (ASVS 7.2.4)."""
    svc = services()
    previous = identity_or_none()
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
    if previous is not None and previous.via == "session" and previous.session is not None:
        svc.sessions.replace(previous.session, opened.record)
    LOGINS.labels(auth_method, "success").inc()
    return opened


def open_login_session(result: LoginResult) -> OpenedSession:
    return open_session(result.user, auth_method=result.auth_method, amr=list(result.amr), acr=result.acr,
                        key_id=result.key_id, scopes=result.scopes)


def set_pending_login_cookie(response, handle: str):
    response.set_cookie(
        pending_login_cookie_name(),
        handle,
        max_age=int(PENDING_LOGIN_LIFETIME.total_seconds()),
        httponly=True,
        secure=services().settings.is_https,
        samesite="Lax",
        path="/",  # __Host- cookies are for the whole host
    )
    return response


def clear_pending_login_cookie(response):
    response.delete_cookie(pending_login_cookie_name(), path="/", httponly=True, samesite="Lax",
                           secure=services().settings.is_https)
    return response


def too_many_attempts(exc: TooManyAttempts) -> ApiError:
    return ApiError(429, "too_many_requests", str(exc), {"Retry-After": str(exc.retry_after)})


def identity_or_none():
    try:
        return current_identity()
    except AuthenticationFailed:
        return None


@bp.app_context_processor
def _navigation():
    """`nav_identity()`: the browser user the view already resolved, for the header (no extra lookups)."""

    def nav_identity():
        identity = g.get("_identity")
        return identity if identity is not None and identity.via == "session" else None

    return {"nav_identity": nav_identity}


# Most specific first: Edge and Chrome also say "Safari", Chrome on iOS says "CriOS".
BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("FxiOS/", "Firefox"), ("CriOS/", "Chrome"),
            ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"), ("python-requests/", "Python"))
SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"), ("Windows", "Windows"),
           ("Mac OS X", "macOS"), ("Linux", "Linux"))


@bp.app_template_filter("device")
def describe_device(user_agent: str | None) -> str:
    """"Firefox on Android" from a User-Agent header, for the session lists."""
    agent = user_agent or ""
    browser = next((name for mark, name in BROWSERS if mark in agent), "")
    system = next((name for mark, name in SYSTEMS if mark in agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (agent[:40] or "Unknown device")


@bp.get("/")
def index():
    return redirect("/account" if identity_or_none() else "/login")


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


@bp.post("/logout")
def logout():
    form = PostOnlyForm()
    if not form.validate_on_submit():
        raise CSRF_FAILED
    identity = identity_or_none()
    if identity and identity.session:
        services().sessions.revoke(identity.session)
    return clear_session_cookie(redirect("/login"))


# -- /account: the signed-in user's own page ------------------------------------

ACCOUNT_KEYS_SHOWN = 5


@bp.get("/account")
def account():
    return render_account(signed_in(full=False))


def render_account(identity, *, profile_form=None, password_form=None, status: int = 200):
    """The account page; a form that failed comes back with its errors beside its fields."""
    svc = services()
    user = identity.user
    if profile_form is None:
        profile_form = ProfileForm(formdata=None, name=user.name, email=user.email)
    keys = svc.keys.list_as(identity, limit=ACCOUNT_KEYS_SHOWN + 1) if identity.key_id is None else []
    sessions = sorted(svc.sessions.active_for(user), key=lambda s: s.last_seen_at, reverse=True)
    page = render_template(
        "account.html",
        identity=identity,
        profile_form=profile_form,
        password_form=password_form or PasswordChangeForm(formdata=None),
        keys=keys[:ACCOUNT_KEYS_SHOWN],
        more_keys=len(keys) > ACCOUNT_KEYS_SHOWN,
        sessions=sessions,
        post_form=PostOnlyForm(formdata=None),
        keep_refresh=svc.settings.keep_refresh_on_password_change,
    )
    return page, status


@bp.post("/account/profile")
def account_profile():
    identity = signed_in()
    form = ProfileForm()
    if not form.validate_on_submit():
        return render_account(identity, profile_form=form, status=400)
    svc = services()
    user = identity.user
    if (form.email.data or "").strip() != (user.email or ""):
        # A new address is where a password reset would go: it takes the current password.
        if not form.email_current_password.data:
            form.email_current_password.errors = ["Enter your current password to change the email address."]
            return render_account(identity, profile_form=form, status=400)
        refused = current_password_refused(identity, form.email_current_password, profile_form=form)
        if refused is not None:
            return refused
    try:
        changed = svc.accounts.update_profile(user, name=form.name.data or "",
                                              email=form.email.data or "", actor=identity.actor)
    except InvalidUserInput as exc:
        form.email.errors = [str(exc)]
        return render_account(identity, profile_form=form, status=400)
    flash("Profile saved." if changed else "Nothing to change.")
    return redirect(url_for("accounts.account") + "#profile")


def current_password_refused(identity, field, **forms):
    """None when `field` holds the user's password (checked and throttled like a login); else
    the account page with the error beside that field (400, or 429 when throttled)."""
    try:
        services().logins.check_password(identity.user.username, field.data, client_ip())
    except InvalidCredentials:
        field.errors = ["This is not your current password."]
        return render_account(identity, status=400, **forms)
    except TooManyAttempts as exc:
        field.errors = [str(exc)]
        page, _ = render_account(identity, **forms)
        return page, 429, {"Retry-After": str(exc.retry_after)}
    return None


@bp.post("/account/password")
def account_password():
    """A new password needs the current one; every other session of the account ends."""
    identity = signed_in()
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return render_account(identity, password_form=form, status=400)
    svc = services()
    user = identity.user
    refused = current_password_refused(identity, form.current_password, password_form=form)
    if refused is not None:
        return refused
    try:
        svc.accounts.set_password(user, form.new_password.data, actor=identity.actor)
    except InvalidUserInput as exc:
        form.new_password.errors = [str(exc)]
        return render_account(identity, password_form=form, status=400)
    ended = svc.sessions.revoke_all(user, except_id=identity.session.id)
    svc.audit.record("session.revoke_all", actor=identity.actor, target=f"user:{user.username}",
                     details={"sessions": ended, "reason": "password_change"}, commit=True)
    flash(f"Password changed. Signed out {ended} other session{'s' if ended != 1 else ''}.")
    return redirect(url_for("accounts.account") + "#password")


@bp.post("/account/sessions/<session_id>/revoke")
def account_session_revoke(session_id: str):
    identity = signed_in()
    if not PostOnlyForm().validate_on_submit():
        raise CSRF_FAILED
    svc = services()
    record = svc.sessions.find_own(identity.user, session_id)
    if record is None:
        raise ApiError(404, "not_found", "There is no such session of yours; it may have ended already.")
    svc.sessions.revoke(record)
    svc.audit.record("session.revoke", actor=identity.actor, target=f"session:{record.id}", commit=True)
    if record.id == identity.session.id:
        return clear_session_cookie(redirect(url_for("accounts.login")))
    flash("Session signed out.")
    return redirect(url_for("accounts.account") + "#sessions")


@bp.post("/account/sessions/revoke-others")
def account_sessions_revoke_others():
    identity = signed_in()
    if not PostOnlyForm().validate_on_submit():
        raise CSRF_FAILED
    svc = services()
    ended = svc.sessions.revoke_all(identity.user, except_id=identity.session.id)
    svc.audit.record("session.revoke_all", actor=identity.actor, target=f"user:{identity.user.username}",
                     details={"sessions": ended}, commit=True)
    flash(f"Signed out {ended} other session{'s' if ended != 1 else ''}.")
    return redirect(url_for("accounts.account") + "#sessions")


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
    return set_session_cookie(api_response({"session_id": opened.record.id, **identity.as_json()}), opened)


def json_password_login(body: dict, username: str, password: str) -> LoginResult:
    """Password (and TOTP code or recovery code when the account has TOTP) to a LoginResult, or ApiError."""
    totp_code = jsonapi.string(body, "totp_code", required=False, max_length=64)
    recovery_code = jsonapi.string(body, "recovery_code", required=False, max_length=64)
    try:
        return services().logins.password_login(
            username, password, client_ip(), totp_code=totp_code, recovery_code=recovery_code
        )
    except InvalidCredentials as exc:
        LOGINS.labels("password", "failure").inc()
        raise ApiError(401, "invalid_credentials", str(exc)) from None
    except TooManyAttempts as exc:
        raise too_many_attempts(exc) from None
    except SecondFactorRequired as exc:
        raise ApiError(401, "totp_required", str(exc)) from None
    except EnrolmentRequired as exc:
        raise ApiError(403, "totp_enrolment_required", str(exc)) from None
    except SecondFactorError as exc:
        LOGINS.labels("password+totp", "failure").inc()
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
    return clear_session_cookie(api_response({"logged_out": True}))


@bp.get("/api/me")
@require_identity()
def me():
    return current_identity().as_json()


def api_response(body: dict, status: int = 200):
    response = jsonify(body)
    response.status_code = status
    return response
