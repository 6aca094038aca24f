"""The device verification pages (RFC 8628 §3.3): the user, signed in on a phone or computer,
enters the code a photo frame or TV shows, sees which app asks, and allows or denies it.

`GET /device?user_code=…` (the device's `verification_uri_complete`) fills the code in but
still asks the user to confirm it (§5.4: a link sent by someone else must not approve their
device in one tap). Every code entered is counted per session and per address before it is
checked (§5.1). `GET /device/qr?user_code=…` is a QR code of that link for a device to show.
"""

from __future__ import annotations

import segno
from flask import Response, render_template, request

from ..throttle import Bucket, TooManyAttempts
from ..web import client_ip, services, signed_in
from .blueprint import bp
from .consent import described_scopes
from .devices import DeviceError, PendingDevice, normalise_user_code, shown
from .forms import DeviceCodeForm, DeviceDecisionForm
from .server import DEVICE_VERIFICATION_PATH

NOT_FOUND = ("That code is not valid, was used already or has expired. Check it against your device; if the "
             "device shows no code any more, start the sign-in on the device again.")


@bp.after_request
def _never_cached(response):
    """The /device pages show the user, the code and a CSRF token: no cache keeps them."""
    if request.path == DEVICE_VERIFICATION_PATH or request.path.startswith(DEVICE_VERIFICATION_PATH + "/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.route(DEVICE_VERIFICATION_PATH, methods=["GET", "POST"])
def device():
    identity = signed_in()
    form = DeviceCodeForm()
    if request.method == "GET":
        given = request.args.get("user_code", "")
        letters = normalise_user_code(given)
        form.user_code.data = shown(letters) if letters else given[:32]
        return _entry_page(form)
    if not form.validate_on_submit():
        return _entry_page(form, status=400)
    found = _pending(identity, form.user_code.data)
    if not isinstance(found, PendingDevice):
        return found
    client = services().oidc.clients.get(found.client_id)
    if client is None:
        return _entry_page(form, error=NOT_FOUND, status=400)
    decision = DeviceDecisionForm(formdata=None, user_code=found.user_code)
    return render_template("oidc/device_consent.html", form=decision, client_name=client.name, user=identity.user,
                           user_code=found.user_code, scopes=described_scopes(found.scope))


@bp.post(DEVICE_VERIFICATION_PATH + "/decision")
def device_decision():
    identity = signed_in()
    form = DeviceDecisionForm()
    if not form.validate_on_submit():
        return _entry_page(DeviceCodeForm(formdata=None), status=400,
                           error="The form expired or was not sent from this site; enter the code again.")
    found = _pending(identity, form.user_code.data or "")
    if not isinstance(found, PendingDevice):
        return found
    allow = bool(form.allow.data) and not form.deny.data  # both buttons at once: no
    oidc = services().oidc
    client = oidc.clients.get(found.client_id)
    try:
        oidc.devices.decide(found, identity.user, identity.session, allow=allow and client is not None)
    except DeviceError as exc:
        return _entry_page(DeviceCodeForm(formdata=None), error=str(exc), status=409)
    if allow and client is not None:
        oidc.consents.grant(identity.user, found.client_id, found.scope)
    return render_template("oidc/device_done.html", allowed=allow and client is not None,
                           client_name=client.name if client else "the app")


@bp.get(DEVICE_VERIFICATION_PATH + "/qr")
def device_qr():
    """An SVG QR code of /device?user_code=… for a device with a screen to show; any code that has
    the form of one (the link itself checks nothing: the user still signs in and confirms)."""
    letters = normalise_user_code(request.args.get("user_code", ""))
    if letters is None:
        return Response("user_code must be a code of 8 letters such as BCDF-GHJK.\n", 400, mimetype="text/plain")
    link = services().oidc.base + DEVICE_VERIFICATION_PATH + "?user_code=" + shown(letters)
    svg = segno.make(link, error="m").svg_inline(scale=6, dark="#000", light="#fff", title="Sign-in link")
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-store"
    return response


def _pending(identity, user_code: str) -> PendingDevice | Response | tuple:
    """The request waiting for this code, counted first against the session's and the address's
    tries; otherwise the page to answer."""
    svc = services()
    try:
        svc.throttle.consume(Bucket("device:session", identity.session.id), Bucket("device:address", client_ip()))
    except TooManyAttempts as exc:
        form = DeviceCodeForm(formdata=None, user_code=user_code[:32])
        page, status = _entry_page(form, status=429, error=f"Too many codes tried; wait {exc.retry_after} seconds "
                                                             "and try again.")
        return page, status, {"Retry-After": str(exc.retry_after)}
    found = svc.oidc.devices.pending(user_code)
    if found is None:
        svc.audit.record("oauth.device_code_unknown", actor=identity.actor, outcome="failure", commit=True)
        return _entry_page(DeviceCodeForm(formdata=None, user_code=user_code[:32]), error=NOT_FOUND, status=400)
    return found


def _entry_page(form: DeviceCodeForm, *, status: int = 200, error: str | None = None):
    return render_template("oidc/device.html", form=form, error=error), status
