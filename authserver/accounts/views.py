"""The signed-in user's own pages (/account: profile, password, sessions) and "who am I"."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from ..errors import ApiError, csrf_failed
from ..identity import Via, identity_or_none
from ..passkeys.forms import RegisterPasskeyForm, RemovePasskeyForm
from ..passkeys.service import PasskeyError
from ..throttle import TooManyAttempts
from ..web import clear_session_cookie, client_ip, respond, services, signed_in
from . import handlers
from .blueprint import bp
from .forms import PasswordChangeForm, PostOnlyForm, ProfileForm
from .service import InvalidCredentials, InvalidUserInput


@bp.app_context_processor
def _navigation():
    """`nav_identity()`: the browser user the view already resolved, for the header (no extra lookups)."""

    def nav_identity():
        identity = g.get("_identity")
        return identity if identity is not None and identity.via == Via.SESSION else None

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


# -- /account: the signed-in user's own page ------------------------------------

ACCOUNT_KEYS_SHOWN = 5


@bp.get("/account")
def account():
    return render_account(signed_in(full=False))


def render_account(identity, *, profile_form=None, password_form=None, passkey_form=None, remove_form=None,
                   status: int = 200):
    """The account page; a form that failed comes back with its errors beside its fields."""
    svc = services()
    user = identity.user
    if profile_form is None:
        profile_form = ProfileForm(formdata=None, name=user.name, email=user.email)
        profile_form.fill(user)
    keys = svc.keys.list_as(identity, limit=ACCOUNT_KEYS_SHOWN + 1) if identity.key_id is None else []
    sessions = sorted(svc.sessions.active_for(user), key=lambda s: s.last_seen_at, reverse=True)
    passkey_options = None
    if identity.key_id is None:
        try:  # a challenge for a new passkey, bound to this session (static/passkeys.js uses it)
            passkey_options = svc.passkeys.registration_options(user, f"session:{identity.session.id}")
        except PasskeyError:
            passkey_options = None  # as many passkeys as allowed, or a concurrent reload: no new one now
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
        mail_enabled=svc.mail.enabled,
        passkeys=svc.passkeys.list_for(user),
        passkey_options=passkey_options,
        passkey_form=passkey_form or RegisterPasskeyForm(formdata=None),
        remove_form=remove_form or RemovePasskeyForm(formdata=None),
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
        changed = svc.accounts.update_profile(user, name=form.name.data or "", email=form.email.data or "",
                                              actor=identity.actor, claims=form.claims())
    except InvalidUserInput as exc:
        getattr(form, exc.field or "email", form.email).errors = [str(exc)]
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
        raise csrf_failed()
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
        raise csrf_failed()
    svc = services()
    ended = svc.sessions.revoke_all(identity.user, except_id=identity.session.id)
    svc.audit.record("session.revoke_all", actor=identity.actor, target=f"user:{identity.user.username}",
                     details={"sessions": ended}, commit=True)
    flash(f"Signed out {ended} other session{'s' if ended != 1 else ''}.")
    return redirect(url_for("accounts.account") + "#sessions")


# -- /account#passkeys: adding and removing passkeys (static/passkeys.js asks the authenticator) ------


def session_binding(identity) -> str:
    """A registration's challenge belongs to the session that asked for it."""
    return f"session:{identity.session.id}"


@bp.post("/account/passkeys")
def register():
    """The authenticator's answer to the options on /account, with the current password."""
    identity = signed_in()
    form = RegisterPasskeyForm()
    if not form.validate_on_submit():
        return render_account(identity, passkey_form=form, status=400)
    refused = current_password_refused(identity, form.current_password, passkey_form=form)
    if refused is not None:
        return refused
    try:
        services().passkeys.register(identity.user, session_binding(identity), form.credential.data or "",
                                     form.name.data or "", actor=identity.actor)
    except PasskeyError as exc:
        form.credential.errors = [exc.description]
        return render_account(identity, passkey_form=form, status=exc.status)
    flash("Passkey added.")
    return redirect(url_for("accounts.account") + "#passkeys")


@bp.post("/account/passkeys/<int:passkey_id>/remove")
def remove(passkey_id: int):
    identity = signed_in()
    form = RemovePasskeyForm()
    if not form.validate_on_submit():
        return render_account(identity, remove_form=form, status=400)
    refused = current_password_refused(identity, form.current_password, remove_form=form)
    if refused is not None:
        return refused
    svc = services()
    user = identity.user
    still_has_factor = svc.totp.is_enrolled(user) or not svc.totp.is_required_for(user)
    try:
        svc.passkeys.remove(user, passkey_id, actor=identity.actor, still_has_factor=still_has_factor)
    except PasskeyError as exc:
        form.current_password.errors = [exc.description]
        return render_account(identity, remove_form=form, status=exc.status)
    flash("Passkey removed.")
    return redirect(url_for("accounts.account") + "#passkeys")


@bp.get("/api/me")
def me():
    return respond(handlers.me(request))
