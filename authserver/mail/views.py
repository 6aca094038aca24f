"""The pages mailed links lead to (password reset, address verification, invitations) and
"Forgot your password?".

A link's token is in its URL only for the first request: the landing view checks it, keeps it
in the signed form cookie and redirects (303) to a page without it, so it is not left in the
address bar, the history or any Referer. The form there spends it with a CSRF-checked POST.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from ..accounts.forms import PostOnlyForm
from ..accounts.service import InvalidUserInput
from ..errors import csrf_failed
from ..throttle import TooManyAttempts
from ..web import client_ip, services, signed_in
from .forms import ChoosePasswordForm, ForgotPasswordForm

bp = Blueprint("mail", __name__)

# purpose → (the page the link lands on, the session key that holds its token)
PAGES = {"reset": "/password/reset", "verify": "/email/verify", "invite": "/invite"}


def _land(purpose: str, token: str):
    services().links.find(token, purpose)  # LinkInvalid: a 400 page saying to ask for a new one
    session[f"link:{purpose}"] = token
    response = redirect(PAGES[purpose], 303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _held(purpose: str):
    """The token the landing view kept, and its live link (LinkInvalid otherwise)."""
    token = session.get(f"link:{purpose}")
    return token, services().links.find(token, purpose)


def _done(purpose: str) -> None:
    session.pop(f"link:{purpose}", None)


# -- Forgot your password? -------------------------------------------------------

@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password():
    mail = services().mail
    form = ForgotPasswordForm()
    status, headers, sent = 200, {}, False
    if not mail.enabled:
        return render_template("mail/forgot.html", form=form, mail_off=True), 200 if request.method == "GET" else 400
    if request.method == "POST":
        if not form.validate_on_submit():
            if form.csrf_token.errors:
                raise csrf_failed()
            status = 400
        else:
            try:
                mail.request_reset(form.email.data, client_ip())
            except TooManyAttempts as exc:
                form.email.errors = [str(exc)]
                status, headers = 429, exc.headers
            else:
                sent = True
    return render_template("mail/forgot.html", form=form, sent=sent,
                           minutes=services().settings.reset_link_minutes), status, headers


@bp.get("/password/reset/<token>")
def reset_landing(token: str):
    return _land("reset", token)


@bp.route("/password/reset", methods=["GET", "POST"])
def reset_password():
    token, link = _held("reset")
    form = ChoosePasswordForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            if form.csrf_token.errors:
                raise csrf_failed()
            return render_template("mail/choose_password.html", form=form, user=link.user, purpose="reset"), 400
        try:
            user = services().mail.complete_reset(token, form.new_password.data)
        except InvalidUserInput as exc:
            form.new_password.errors = [exc.description]
            return render_template("mail/choose_password.html", form=form, user=link.user, purpose="reset"), 400
        _done("reset")
        flash(f'Password changed for "{user.username}". Sign in with the new password; you were signed out '
              "everywhere.")
        return redirect(url_for("accounts.login"), 303)
    return render_template("mail/choose_password.html", form=form, user=link.user, purpose="reset")


# -- invitations -----------------------------------------------------------------

@bp.get("/invite/<token>")
def invite_landing(token: str):
    return _land("invite", token)


@bp.route("/invite", methods=["GET", "POST"])
def accept_invitation():
    token, link = _held("invite")
    form = ChoosePasswordForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            if form.csrf_token.errors:
                raise csrf_failed()
            return render_template("mail/choose_password.html", form=form, user=link.user, purpose="invite"), 400
        try:
            user = services().mail.accept_invitation(token, form.new_password.data)
        except InvalidUserInput as exc:
            form.new_password.errors = [exc.description]
            return render_template("mail/choose_password.html", form=form, user=link.user, purpose="invite"), 400
        _done("invite")
        flash(f'Welcome, {user.username}: your password is set. Sign in with it.')
        return redirect(url_for("accounts.login"), 303)
    return render_template("mail/choose_password.html", form=form, user=link.user, purpose="invite")


# -- address verification ----------------------------------------------------------

@bp.get("/email/verify/<token>")
def verify_landing(token: str):
    return _land("verify", token)


@bp.route("/email/verify", methods=["GET", "POST"])
def verify_email():
    """A button, not the link itself, verifies: mail scanners that open every link verify nothing."""
    token, link = _held("verify")
    form = PostOnlyForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            raise csrf_failed()
        user = services().mail.verify(token)
        _done("verify")
        return render_template("mail/verified.html", user=user)
    return render_template("mail/verify.html", form=form, link=link)


@bp.post("/account/email/verify")
def send_verification():
    """The account page's "Send a verification link"."""
    identity = signed_in()
    if not PostOnlyForm().validate_on_submit():
        raise csrf_failed()
    user = identity.user
    services().mail.send_verification(user, actor=identity.actor)  # 429 page when asked too often
    flash(f"A verification link is on its way to {user.email}.")
    return redirect(url_for("accounts.account") + "#profile", 303)

