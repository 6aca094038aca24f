"""Browser login, JSON login, logout and "who am I"."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request

from .. import jsonapi
from ..errors import ApiError
from ..identity import AuthenticationFailed, current_identity, require_identity
from ..web import client_ip, safe_next, services
from .forms import LoginForm, PostOnlyForm
from .service import SESSION_COOKIE, InvalidCredentials, OpenedSession, identity_from_session

bp = Blueprint("accounts", __name__)


def set_session_cookie(response, opened: OpenedSession):
    settings = services().settings
    response.set_cookie(
        SESSION_COOKIE,
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
    response.delete_cookie(SESSION_COOKIE, path="/", domain=settings.session_cookie_domain, httponly=True,
                           samesite="Lax", secure=settings.is_https)
    return response


def open_session(user, *, auth_method: str, amr, acr: str = "", **kwargs) -> OpenedSession:
    svc = services()
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
    return opened


def identity_or_none():
    try:
        return current_identity()
    except AuthenticationFailed:
        return None


@bp.get("/")
def index():
    return redirect("/account" if identity_or_none() else "/login")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    next_url = safe_next(request.values.get("next"))
    error = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                user = services().accounts.check_password(form.username.data, form.password.data)
            except InvalidCredentials as exc:
                services().audit.record("login.failed", actor=f"user:{form.username.data[:150]}", outcome="failure", commit=True)
                error, status = str(exc), 401
            else:
                opened = open_session(user, auth_method="password", amr=["pwd"], acr="1")
                return set_session_cookie(redirect(next_url), opened)
        else:
            error, status = "Enter your username and password, then try again.", 400
            if form.csrf_token.errors:
                error = "The form expired; please try again."
    form.next.data = next_url
    return render_template("login.html", form=form, error=error), status


@bp.post("/logout")
def logout():
    form = PostOnlyForm()
    if not form.validate_on_submit():
        raise ApiError(400, "csrf_failed", "The form expired or was not sent from this site; reload the page and try again.")
    identity = identity_or_none()
    if identity and identity.session:
        services().sessions.revoke(identity.session)
    return clear_session_cookie(redirect("/login"))


@bp.get("/account")
def account():
    identity = identity_or_none()
    if identity is None or identity.via != "session":
        return redirect("/login?next=/account")
    return render_template("account.html", identity=identity, logout_form=PostOnlyForm())


@bp.post("/api/session/login")
def api_login():
    body = jsonapi.json_object()
    username = jsonapi.string(body, "username", max_length=200)
    password = jsonapi.string(body, "password", max_length=1024)
    try:
        user = services().accounts.check_password(username, password)
    except InvalidCredentials as exc:
        services().audit.record("login.failed", actor=f"user:{username[:150]}", outcome="failure", commit=True)
        raise ApiError(401, "invalid_credentials", str(exc)) from None
    opened = open_session(user, auth_method="password", amr=["pwd"], acr="1")
    identity = identity_from_session(opened.record)
    return set_session_cookie(api_response({"session_id": opened.record.id, **identity.as_json()}), opened)


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
