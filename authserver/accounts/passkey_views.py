"""Passkey pages: adding and removing them on /account, and the passwordless sign-in at /login/passkey
(the second factor after a password is the accounts package's /login/totp)."""

from __future__ import annotations

from flask import flash, make_response, redirect, render_template, request, url_for

from ..crypto import random_token
from ..passkeys.forms import PasskeyLoginForm, RegisterPasskeyForm, RemovePasskeyForm
from ..passkeys.service import ChallengeExpired, PasskeyError, binding_of_browser
from ..throttle import Bucket, TooManyAttempts
from ..web import (
    clear_pending_login_cookie,
    client_ip,
    passkey_login_cookie_name,
    safe_next,
    services,
    set_pending_login_cookie,
    set_session_cookie,
    signed_in,
)
from .blueprint import bp
from .login import passkey_only
from .login_views import open_login_session
from .views import current_password_refused, render_account


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

