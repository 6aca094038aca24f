"""OIDC endpoints: discovery, JWKS, authorize + consent, token, userinfo, introspection,
revocation, RP-initiated logout, and the user's consents."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import (
    current_app,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
)
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.datastructures import CombinedMultiDict, MultiDict

from ..accounts.acr import required_acr, satisfies
from ..accounts.forms import PostOnlyForm
from ..errors import ApiError, csrf_failed
from ..extensions import db
from ..identity import Via, current_identity, identity_or_none, require_identity
from ..web import clear_session_cookie, pushed_cookie_name, respond, services, signed_in
from . import handlers, params
from .blueprint import bp
from .claims import claims_scopes
from .clients import append_query
from .codes import TicketSpent
from .consent import described_scopes
from .forms import ConsentForm, LogoutForm
from .pushed import FOLLOW_SECONDS, REQUEST_URI_PREFIX, Opened, PushedRequestError
from .signing import JWKS_MAX_AGE

log = logging.getLogger("authserver.oidc")

# The server's own mark on a login round trip (prompt=login, max_age, acr_values): when it sent
# the user to log in, MACed and bound to the request. The session must be newer than that.
LOGIN_TICKET = "login_ticket"
LOGIN_TICKET_SECONDS = 1800
# The login a ticket asked for must also be this recent when the ticket is used.
LOGIN_TICKET_GRACE_SECONDS = 300
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def provider():
    return services().oidc


# -- discovery and keys --------------------------------------------------------


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def discovery():
    response = jsonify(provider().metadata())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/oauth/jwks")
def jwks():
    response = jsonify(provider().signing.jwks())
    # Short, and the time a rotated-in key is published before it signs (signing.PUBLISH_AHEAD).
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


# -- authorization -------------------------------------------------------------


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize():
    return _with_pushed_cookie(_authorize(decision=None))


@bp.post("/oauth/consent")
def consent():
    form = ConsentForm()
    if not form.validate_on_submit():
        raise ApiError(
            400,
            "csrf_failed",
            "The consent form expired or was not sent from this site; start the sign-in again from the app.",
        )
    # Allowed only when Allow alone was pressed: an answer with both buttons fails closed.
    return _with_pushed_cookie(_authorize(decision="allow" if form.allow.data and not form.deny.data else "deny"))


def _authorize(decision: str | None):
    oidc = provider()
    server = oidc.server
    identity = identity_or_none()
    session = identity.session if identity is not None and identity.via == Via.SESSION else None
    if session is not None and session.key_id is not None:
        # A session opened with an API key is bounded by the key's scopes and skipped the
        # second factor: it may not sign the user in to apps. The user logs in properly.
        session = None
    user = session.user if session is not None else None
    repeated = _repeated_parameter()
    if repeated:
        # RFC 6749 §3.1: no parameter twice (`prompt=none&prompt=login` must not pick one).
        return _authorization_error(InvalidRequestError(f"The parameter {repeated} appears more than once."))
    try:
        pushed = _open_pushed()
    except PushedRequestError as exc:
        return _error_page("invalid_request_uri", f"{exc} The app sent you here with it.")
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return _authorization_error(error)
    except ValueError:
        # Authlib refuses to quote characters such as `\`, `"`, NUL or non-ASCII in its error
        # description: the request named a bad redirect_uri or response_type with them in it.
        log.info("authorization request refused: characters not allowed in its parameters")
        return _authorization_error(
            InvalidRequestError("A parameter (redirect_uri or response_type) contains characters that are not allowed.")
        )

    redirect_uri = grant.redirect_uri
    state = request.values.get("state")
    prompts = set((request.values.get("prompt") or "").split())
    try:
        if pushed is None and (oidc.settings.require_par or grant.client.row.require_par):
            raise InvalidRequestError(
                "This client must push its authorization requests to the pushed authorization request endpoint "
                "and send the request_uri it gets back (RFC 9126)."
            )
        params.response_mode(request.values)
        max_age = params.max_age(request.values)
        params.dpop_jkt(request.values)
        params.lengths(request.values)
        if user is None:
            if "none" in prompts:
                raise LoginRequiredError()
            return _to_login(fresh=False)
        ticket = _genuine_ticket()
        if _needs_fresh_login(session, prompts, max_age, ticket):
            if "none" in prompts:
                raise LoginRequiredError()
            return _to_login(fresh=True)
        if not satisfies(session.acr, required_acr(request.values.get("acr_values"))):
            # The app asked for two factors and this session has one: sign in again, with the second.
            if "none" in prompts:
                raise UnmetAuthenticationRequirements()
            return _to_login(fresh=True)
        client = grant.client
        claims_request = params.claims_request(request.values, client)
        # Claims asked for one by one need the consent of their scope, as if it were asked for.
        scope = " ".join(dict.fromkeys([*(grant.request.scope or "").split(), *sorted(claims_scopes(claims_request))]))
        needs_consent = not client.skips_consent and (
            "consent" in prompts or not oidc.consents.covers(user.id, client.client_id, scope)
        )
        if needs_consent and decision is None:
            if "none" in prompts:
                raise ConsentRequiredError()
            return _consent_page(client, user, scope)
    except OAuth2Error as error:
        error.redirect_uri, error.state = redirect_uri, state
        return _authorization_error(error)

    if decision == "deny":
        grant_user = None
    else:
        if decision == "allow":
            oidc.consents.grant(user, client.client_id, scope)
        grant_user = user
    grant.request.sso_session = session
    grant.request.claims_request = claims_request
    grant.request.login_ticket = ticket.id if ticket is not None else None
    if pushed is not None and not oidc.pushed.use(pushed.uri):
        # Another tab answered with this pushed request first.
        db.session.rollback()
        return _error_page("invalid_request_uri", "The request_uri was used already: start the sign-in again "
                           "from the app.")
    try:
        response = server.create_authorization_response(grant=grant, grant_user=grant_user)
    except TicketSpent:
        # A second request raced this one with the same ticket and won: log in again.
        return _to_login(fresh=True)
    if response.status_code != 302:
        db.session.rollback()
        return response
    db.session.commit()  # the pushed request's use, when the answer wrote nothing else (a refusal)
    return _in_response_mode(response, redirect_uri)


def _open_pushed() -> Opened | None:
    """RFC 9126 §4: with a request_uri, the request is the one its client pushed; the parameters
    sent beside it (but client_id and the server's own: login ticket, consent form) are ignored.
    The pushed parameters become the request's, so that every check below reads them."""
    uri = request.values.get("request_uri")
    g.pushed = None
    if not uri or not uri.startswith(REQUEST_URI_PREFIX):
        return None  # Not a reference to a pushed request: request objects by URL are refused (grants.py).
    opened = provider().pushed.open(uri, request.values.get("client_id"), request.cookies.get(pushed_cookie_name()))
    own = [(k, v) for k, v in request.args.items(multi=True) if k == LOGIN_TICKET]
    pushed = [(k, v) for k, v in opened.params if k not in _UNBOUND]  # the server's own are never pushed
    request.args = MultiDict([*pushed, *own])
    # Of a consent form's fields only the form's own count: nothing else joins the pushed request.
    form = MultiDict([(k, v) for k, v in request.form.items(multi=True) if k in _UNBOUND])
    request.values = CombinedMultiDict([request.args, form])
    g.pushed = opened
    return opened


def _with_pushed_cookie(response):
    """The browser that opened a pushed request keeps a value of its own to follow it with."""
    pushed = g.get("pushed")
    if pushed is not None and pushed.opener:
        settings = services().settings
        response = make_response(response)
        response.set_cookie(pushed_cookie_name(), pushed.opener, max_age=FOLLOW_SECONDS, httponly=True,
                            secure=settings.is_https, samesite="Lax", path="/")
    return response


def _round_trip() -> list[tuple[str, str]]:
    """The request's parameters as the login and consent pages send them back here: a pushed
    request by reference, any other as sent; never the server's own (ticket, consent form)."""
    pushed = g.get("pushed")
    if pushed is not None:
        return [("client_id", pushed.client_id), ("request_uri", pushed.uri)]
    return [(k, v) for k, v in request.values.items(multi=True) if k not in _UNBOUND]


def _repeated_parameter() -> str | None:
    seen: set[str] = set()
    for name in (key for key, _ in request.values.items(multi=True)):
        if name in seen:
            return name[:40] if name.isascii() and name.isprintable() else "(unprintable)"
        seen.add(name)
    return None


class UnmetAuthenticationRequirements(OAuth2Error):
    """OpenID Connect Unmet Authentication Requirements 1.0: the session is weaker than acr_values asks."""

    error = "unmet_authentication_requirements"
    description = "The app asked for a second factor and the user signed in with a password only."


def _in_response_mode(response, redirect_uri: str):
    """The redirect to the client as the request asked for it. form_post: a page whose form posts the
    same parameters to the redirect URI, sent by /static/form_post.js (no inline script: the CSP
    holds) or by its button without JavaScript; never cached."""
    if request.values.get("response_mode") != "form_post":
        return response
    location = response.headers["Location"]
    params = parse_qsl(location[len(redirect_uri):].lstrip("?&"), keep_blank_values=True)
    page = make_response(render_template("oidc/form_post.html", action=redirect_uri, params=params))
    page.headers["Cache-Control"] = "no-store"
    return page


def _needs_fresh_login(session, prompts: set[str], max_age: int | None, ticket: Ticket | None) -> bool:
    """prompt=login and an exceeded max_age ask for a login newer than this request.

    Whether the login is newer is decided from server-held facts only: the session's
    auth_time against the time in this request's login ticket, which the server issued
    (MACed, bound to the request's parameters, short-lived) when it sent the user to log in.
    A ticket counts once: the code it was used for records it (`CodeStore.ticket_spent`).
    """
    now = services().clock.now()
    if ticket is not None:
        # This very request was sent to log in by the server: only a login since then will do,
        # and one that is still recent (a login page left open does not make a fresh login later).
        recent = max(max_age or 0, LOGIN_TICKET_GRACE_SECONDS)
        return not (session.auth_time > ticket.started and (now - session.auth_time).total_seconds() <= recent)
    if "login" in prompts:
        return True
    if max_age is None:
        return False
    return (now - session.auth_time).total_seconds() > max_age


# Every parameter of the request is bound into its ticket, but the ticket and the consent form's own.
_UNBOUND = frozenset({LOGIN_TICKET, "csrf_token", "allow", "deny"})


def _request_digest() -> str:
    params = sorted((k, v) for k, v in request.values.items(multi=True) if k not in _UNBOUND)
    return hashlib.sha256(json.dumps(params, separators=(",", ":")).encode()).hexdigest()


def _ticket_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="authserver.login-ticket")


@dataclass(frozen=True)
class Ticket:
    started: datetime  # when the server sent this request to log in
    id: str  # what the code it is used for records, so that it counts once


def _genuine_ticket() -> Ticket | None:
    """This very request's login ticket, if the server issued it recently and it was not used yet."""
    raw = request.values.get(LOGIN_TICKET, "")
    if not raw or len(raw) > 300:
        return None
    try:
        issued_us, digest = _ticket_serializer().loads(raw)
    except (BadSignature, ValueError, TypeError):
        return None
    if (
        not isinstance(issued_us, int)
        or not isinstance(digest, str)
        or not hmac.compare_digest(digest, _request_digest())
    ):
        return None
    started = EPOCH + timedelta(microseconds=issued_us)
    age = (services().clock.now() - started).total_seconds()
    if not 0 <= age <= LOGIN_TICKET_SECONDS:
        return None
    ticket_id = hashlib.sha256(raw.encode()).hexdigest()
    if provider().codes.ticket_spent(ticket_id):
        return None
    return Ticket(started, ticket_id)


def _to_login(*, fresh: bool):
    params = _round_trip()
    if fresh:
        # prompt=login stays: without its ticket the request asks for a login again.
        issued_us = (services().clock.now() - EPOCH) // timedelta(microseconds=1)
        params.append((LOGIN_TICKET, _ticket_serializer().dumps([issued_us, _request_digest()])))
    next_url = "/oauth/authorize?" + urlencode(params)
    return redirect("/login?" + urlencode({"next": next_url}))


def _consent_page(client, user, scope: str):
    scopes = described_scopes(scope)
    query = urlencode([*_round_trip(), *((LOGIN_TICKET, v) for v in request.values.getlist(LOGIN_TICKET))])
    return render_template(
        "oidc/consent.html",
        form=ConsentForm(),
        client_name=client.name,
        user=user,
        scopes=scopes,
        action="/oauth/consent?" + query,
    )


def _authorization_error(error: OAuth2Error):
    """Back to the client when its redirect URI is verified; otherwise an error page here."""
    oidc = provider()
    if error.redirect_uri:
        if error.state is None:
            error.state = request.values.get("state")
        pushed = g.get("pushed")
        if pushed is not None:
            # An answer to the client ends the pushed request too.
            oidc.pushed.use(pushed.uri)
            db.session.commit()
        response = oidc.server.handle_error_response(None, error)
        response.headers["Location"] = append_query(response.headers["Location"], {"iss": oidc.issuer})
        return _in_response_mode(response, error.redirect_uri)
    description = error.description or "The authorization request is not valid."
    return _error_page(error.error, f"{description} The request did not name a registered client and redirect "
                       "URI, so you were not sent back to the app; ask its developer to fix its configuration.")


def _error_page(error: str, description: str):
    return render_template("error.html", status=400, error=error, description=description), 400


# -- token, userinfo, introspection, revocation --------------------------------


@bp.post("/oauth/token")
def token():
    return respond(handlers.token(request))


@bp.post("/oauth/introspect")
def introspect():
    return respond(handlers.introspect(request))


@bp.post("/oauth/revoke")
def revoke():
    return respond(handlers.revoke(request))


@bp.post("/oauth/device_authorization")
def device_authorization():
    return respond(handlers.device_authorization(request))


@bp.post("/oauth/par")
def pushed_authorization():
    return respond(handlers.pushed_authorization(request))


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
def userinfo():
    server = provider().server
    try:
        return server.create_endpoint_response("userinfo")
    except OAuth2Error as error:  # raised before Authlib's own handling: insecure_transport
        return server.handle_error_response(None, error)


# -- RP-initiated logout -------------------------------------------------------


@bp.route("/oauth/logout", methods=["GET", "POST"])
def logout():
    server = provider().server
    try:
        end_request = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return render_template(
            "error.html",
            status=400,
            error=error.error,
            description=f"{error.description or 'The logout request is not valid.'} "
            "You are still signed in; sign out from your account page.",
        ), 400
    if not end_request.hint_current:
        # No valid hint for the user signed in here (or no one is): ask before acting.
        form = LogoutForm()
        if request.method == "GET" or not form.validate_on_submit():
            form.client_id.data = request.values.get("client_id", "")
            form.post_logout_redirect_uri.data = request.values.get("post_logout_redirect_uri", "")
            form.state.data = request.values.get("state", "")
            client = end_request.client
            return render_template(
                "oidc/logout.html", form=form, done=False, client_name=client.name if client else None
            )
    response = server.create_endpoint_response("end_session", end_request)
    g._identity = None  # signed out: the page shows no signed-in navigation
    if response is None:
        response = make_response(render_template("oidc/logout.html", done=True))
    return clear_session_cookie(response)


# -- the user's consents -------------------------------------------------------


@bp.app_context_processor
def _connected_apps():
    """`connected_apps(user)` for the account page: the clients this user has consented to."""

    def connected_apps(user):
        return [(consent, client) for consent, client in provider().consents.list_for(user.id)]

    return {"connected_apps": connected_apps, "revoke_app_form": PostOnlyForm}


@bp.post("/account/apps/<client_id>/revoke")
def revoke_app(client_id: str):
    identity = signed_in()
    if not PostOnlyForm().validate_on_submit():
        raise csrf_failed()
    if provider().consents.revoke(identity.user, client_id[:64]):
        flash("Access revoked; the app asks again next time you use it.")
    return redirect("/account#connected-apps")


def _account_identity():
    identity = current_identity()
    if identity.via == Via.BEARER:
        raise ApiError(403, "forbidden", "Manage connected apps with your own session or API key, not an app's token.")
    if identity.scopes is not None and not identity.has_scope("admin"):
        # A narrow key (photos:read, say) must not revoke the apps' access, as it may not manage keys.
        raise ApiError(
            403,
            "insufficient_scope",
            "Managing connected apps needs a full login, or a credential with the admin scope.",
        )
    return identity


@bp.get("/api/me/consents")
@require_identity()
def list_consents():
    identity = _account_identity()
    items = [
        {
            "client_id": consent.client_id,
            "client_name": client.name if client else None,
            "scopes": consent.scope.split(),
            "granted_at": consent.created_at.isoformat(),
            "updated_at": consent.updated_at.isoformat(),
        }
        for consent, client in provider().consents.list_for(identity.user.id)
    ]
    return {"consents": items}


@bp.delete("/api/me/consents/<client_id>")
@require_identity()
def revoke_consent(client_id: str):
    identity = _account_identity()
    if len(client_id) > 64 or not provider().consents.revoke(identity.user, client_id):
        raise ApiError(
            404, "not_found", "You have not given this client consent; check the client_id in GET /api/me/consents."
        )
    return {"revoked": True, "client_id": client_id}
