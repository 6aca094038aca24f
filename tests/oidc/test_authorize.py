"""The authorization endpoint: redirect URI rules, PKCE, prompt/max_age, consent, RFC 9207 iss."""

import pytest

from authserver.oidc.clients import ClientError
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import make_client, make_user
from tests.helpers.html import form_action
from tests.helpers.oidc import REDIRECT, authorize_params, get_code, logged_in, pkce_pair, query_of


@pytest.fixture
def alice(services):
    return make_user(services, "alice")


def test_not_logged_in_goes_to_login_with_the_authorize_url(client, services):
    gallery, _ = make_client(services)
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/login?next=%2Foauth%2Fauthorize%3F")
    assert gallery.client_id in location


def test_success_carries_code_state_untouched_and_iss(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    state = "a b+c/=?&%20ü"
    code, query, _ = get_code(client, gallery, state=state)
    assert code
    assert query["state"] == state
    assert query["iss"] == services.settings.issuer


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example/callback",
    "https://gallery.example/callback/",
    "https://gallery.example/callback?x=1",
    "https://GALLERY.example/callback",
    "",
])
def test_unregistered_or_missing_redirect_uri_gets_an_error_page_never_a_redirect(
        client, services, alice, redirect_uri):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    params = authorize_params(gallery, redirect_uri=redirect_uri)
    if not redirect_uri:
        del params["redirect_uri"]
    response = client.get("/oauth/authorize", query_string=params)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "text/html" in response.content_type
    assert "not sent back" in response.text


def test_unknown_client_gets_an_error_page(client, services, alice):
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string={"response_type": "code", "client_id": "nope",
                                                            "redirect_uri": REDIRECT})
    assert response.status_code == 400 and "Location" not in response.headers


def test_custom_scheme_redirect_matches_only_itself(client, services, alice):
    app_client, _ = make_client(services, "Immich app", redirect_uris=["app.immich:///oauth-callback"], public=True)
    logged_in(client, "alice")
    _, challenge = pkce_pair()
    page = client.get("/oauth/authorize", query_string=authorize_params(
        app_client, redirect_uri="app.immich:///oauth-callback", challenge=challenge))
    response = client.post(form_action(page.text), data={"csrf_token": csrf_token(page.text), "allow": "x"})
    # Sent exactly as registered: URL libraries like to collapse ":///" into ":/".
    assert response.headers["Location"].startswith("app.immich:///oauth-callback?code=")
    assert query_of(response.headers["Location"])["iss"] == services.settings.issuer
    denied = client.get("/oauth/authorize", query_string=authorize_params(
        app_client, redirect_uri="app.immich:///oauth-callback", challenge=challenge, scope="openid admin"))
    assert denied.headers["Location"].startswith("app.immich:///oauth-callback?error=")
    for other in ("app.immich:///oauth-callback2", "app.immich://oauth-callback", "app.evil:///oauth-callback"):
        response = client.get("/oauth/authorize", query_string=authorize_params(
            app_client, redirect_uri=other, challenge=challenge))
        assert response.status_code == 400 and "Location" not in response.headers


def test_loopback_redirect_accepts_any_port_but_nothing_else(client, services, alice):
    native, _ = make_client(services, "Uploader", redirect_uris=["http://127.0.0.1/callback"], public=True)
    logged_in(client, "alice")
    _, challenge = pkce_pair()
    code, _, _ = get_code(client, native, redirect_uri="http://127.0.0.1:51234/callback", challenge=challenge)
    assert code
    for other in ("http://127.0.0.1:51234/other", "http://localhost:51234/callback", "https://127.0.0.1:5/callback"):
        response = client.get("/oauth/authorize", query_string=authorize_params(
            native, redirect_uri=other, challenge=challenge))
        assert response.status_code == 400 and "Location" not in response.headers


def test_errors_to_a_valid_redirect_carry_state_and_iss(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, scope="openid admin"))
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT)
    assert query["error"] == "invalid_scope"
    assert query["state"] == "s-123"
    assert query["iss"] == services.settings.issuer


def test_response_type_other_than_code_is_refused(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    for response_type in ("token", "id_token", "code id_token"):
        response = client.get("/oauth/authorize", query_string=authorize_params(gallery, response_type=response_type))
        query = query_of(response.headers["Location"])
        assert query["error"] == "unsupported_response_type" and query["iss"] == services.settings.issuer


@pytest.mark.parametrize("param,error",
                         [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")])
def test_request_objects_are_not_supported(client, services, alice, param, error):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, **{param: "eyJhbGciOi.x.y"}))
    assert query_of(response.headers["Location"])["error"] == error


def test_unknown_parameters_are_ignored(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, ui_locales="de", foo="bar", login_hint="alice")
    assert code


@pytest.mark.parametrize("method", ["plain", None, "S512"])
def test_pkce_other_than_s256_is_refused(client, services, alice, method):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    _, challenge = pkce_pair()
    params = authorize_params(gallery, challenge=None, code_challenge=challenge)
    if method:
        params["code_challenge_method"] = method
    response = client.get("/oauth/authorize", query_string=params)
    query = query_of(response.headers["Location"])
    assert query["error"] == "invalid_request" and "S256" in query["error_description"]


def test_public_client_must_use_pkce(client, services, alice):
    app_client, _ = make_client(services, redirect_uris=[REDIRECT], public=True)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(app_client, challenge=None))
    query = query_of(response.headers["Location"])
    assert query["error"] == "invalid_request" and "PKCE" in query["error_description"]
    # A public client cannot be registered without it either.
    with pytest.raises(ClientError, match="PKCE"):
        make_client(services, "App 2", redirect_uris=[REDIRECT], public=True, pkce_required=False)


def test_pkce_is_required_for_all_clients_by_default_and_an_exempt_client_may_skip_it(client, services, alice):
    """RFC 9700 §2.1.1: AUTHSERVER_PKCE_REQUIRED defaults to all; a confidential client may be exempted."""
    assert services.settings.pkce_required == "all"
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, challenge=None))
    assert query_of(response.headers["Location"])["error"] == "invalid_request"
    _, challenge = pkce_pair()
    code, _, _ = get_code(client, gallery, challenge=challenge)
    assert code
    exempt, _ = make_client(services, "Old gallery", pkce_required=False)
    code, _, _ = get_code(client, exempt, challenge=None)
    assert code


def test_pkce_for_public_clients_only_when_configured(app, services, alice):
    from authserver import create_app

    lenient = create_app(services.settings.replace(pkce_required="public"), clock=services.clock)
    http = lenient.test_client()
    gallery, _ = make_client(services)
    logged_in(http, "alice")
    code, _, _ = get_code(http, gallery, challenge=None)
    assert code


def test_prompt_none_without_session_is_login_required(client, services):
    gallery, _ = make_client(services)
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, prompt="none"))
    query = query_of(response.headers["Location"])
    assert query["error"] == "login_required" and query["state"] == "s-123"
    assert query["iss"] == services.settings.issuer


def test_prompt_none_without_consent_is_consent_required(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, prompt="none"))
    assert query_of(response.headers["Location"])["error"] == "consent_required"


def test_prompt_none_with_session_and_consent_returns_a_code(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    get_code(client, gallery)
    code, _, _ = get_code(client, gallery, prompt="none")
    assert code


def test_prompt_login_forces_a_new_login_then_proceeds(client, services, clock, alice):
    gallery, _ = make_client(services, trusted=True)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, prompt="login"))
    assert response.headers["Location"].startswith("/login?next=")
    next_url = query_of(response.headers["Location"])["next"]
    # The request comes back as it was, with the server's ticket: the login must be newer than it.
    assert query_of(next_url)["prompt"] == "login" and query_of(next_url)["login_ticket"]
    assert client.get(next_url).headers["Location"].startswith("/login?next=")
    clock.advance(seconds=5)
    logged_in(client, "alice")
    again = client.get(next_url)
    assert again.status_code == 302 and query_of(again.headers["Location"])["code"]


def test_max_age_exceeded_forces_login(client, services, clock, alice):
    gallery, _ = make_client(services, trusted=True)
    logged_in(client, "alice")
    clock.advance(seconds=120)
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, max_age="60"))
    assert response.headers["Location"].startswith("/login?next=")
    fresh = client.get("/oauth/authorize", query_string=authorize_params(gallery, max_age="600"))
    assert query_of(fresh.headers["Location"])["code"]
    refused = client.get("/oauth/authorize", query_string=authorize_params(gallery, max_age="60", prompt="none"))
    assert query_of(refused.headers["Location"])["error"] == "login_required"


def test_max_age_must_be_a_number(client, services, alice):
    gallery, _ = make_client(services, trusted=True)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, max_age="soon"))
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_consent_page_shows_client_and_scopes_with_allow_and_deny(client, services, alice):
    gallery, _ = make_client(services, "Photo Gallery")
    logged_in(client, "alice")
    page = client.get("/oauth/authorize", query_string=authorize_params(gallery))
    assert page.status_code == 200
    assert "Photo Gallery" in page.text and "email" in page.text
    assert 'name="allow"' in page.text and 'name="deny"' in page.text and 'name="csrf_token"' in page.text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_consent_is_remembered_per_scope_set(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    get_code(client, gallery, scope="openid profile")
    again = client.get("/oauth/authorize", query_string=authorize_params(gallery, scope="openid"))
    assert again.status_code == 302
    wider = client.get("/oauth/authorize", query_string=authorize_params(gallery, scope="openid profile email"))
    assert wider.status_code == 200  # a new scope: asked again
    forced = client.get("/oauth/authorize", query_string=authorize_params(gallery, scope="openid", prompt="consent"))
    assert forced.status_code == 200


def test_trusted_client_skips_consent(client, services, alice):
    first_party, _ = make_client(services, trusted=True)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(first_party))
    assert response.status_code == 302 and query_of(response.headers["Location"])["code"]


def test_deny_returns_access_denied_with_state_and_iss(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    code, query, _ = get_code(client, gallery, allow=False)
    assert code is None
    assert query["error"] == "access_denied" and query["state"] == "s-123" and query["iss"]
    assert client.get("/oauth/authorize", query_string=authorize_params(gallery)).status_code == 200


def test_consent_without_csrf_token_is_refused(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    page = client.get("/oauth/authorize", query_string=authorize_params(gallery))
    response = client.post(form_action(page.text), data={"allow": "x"})
    assert response.status_code == 400
    assert services.oidc.consents.covers(alice.id, gallery.client_id, "openid") is False
    assert csrf_token(page.text)


def test_a_replayed_nonce_is_refused(client, services, alice):
    gallery, _ = make_client(services, trusted=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, nonce="same-nonce")
    assert code
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, nonce="same-nonce"))
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


# -- response modes -------------------------------------------------------------------


def form_post_fields(html: str) -> tuple[str, dict[str, str]]:
    """The form_post page's target and hidden fields, as a browser would read them."""
    import html as html_lib
    import re

    action = re.search(r'<form method="post" action="([^"]+)" id="form-post">', html).group(1)
    form = html[html.index('id="form-post">'):]
    form = form[:form.index("</form>")]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form))
    return html_lib.unescape(action), {html_lib.unescape(k): html_lib.unescape(v) for k, v in fields.items()}


def test_form_post_answers_a_page_that_posts_the_code_to_the_redirect_uri(client, services, alice):
    gallery, secret = make_client(services, trusted=True)
    logged_in(client, "alice")
    state = 'a "quoted" <state> & more'
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, state=state,
                                                                             response_mode="form_post"))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    action, fields = form_post_fields(response.text)
    assert action == REDIRECT
    assert set(fields) == {"code", "state", "iss"} and fields["state"] == state
    assert fields["iss"] == services.settings.issuer
    # No inline script: the page posts itself with the site's own script file, under the same CSP.
    assert '<script src="/static/form_post.js"></script>' in response.text and "<script>" not in response.text
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert client.get("/static/form_post.js").status_code == 200
    from tests.helpers.oidc import exchange

    assert exchange(client, gallery, secret, fields["code"]).status_code == 200


def test_form_post_also_carries_errors(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    page = client.get("/oauth/authorize", query_string=authorize_params(gallery, response_mode="form_post"))
    denied = client.post(form_action(page.text), data={"csrf_token": csrf_token(page.text), "deny": "x"})
    assert denied.status_code == 200
    action, fields = form_post_fields(denied.text)
    assert action == REDIRECT and fields["error"] == "access_denied" and fields["state"] == "s-123"


@pytest.mark.parametrize("mode", ["fragment", "query.jwt", "form_post.jwt", "web_message", "FORM_POST"])
def test_an_unsupported_response_mode_is_refused_not_answered_in_another(client, services, alice, mode):
    gallery, _ = make_client(services, trusted=True)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, response_mode=mode))
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["error"] == "invalid_request" and "response_mode" in query["error_description"]
    assert "code" not in query


def test_discovery_lists_the_response_modes_it_answers(client):
    assert client.get("/.well-known/openid-configuration").json["response_modes_supported"] == ["query", "form_post"]


def test_a_consent_answer_with_both_buttons_is_a_denial(client, services, alice):
    gallery, _ = make_client(services)
    logged_in(client, "alice")
    page = client.get("/oauth/authorize", query_string=authorize_params(gallery))
    both = client.post(form_action(page.text), data={"csrf_token": csrf_token(page.text), "allow": "x", "deny": "x"})
    assert query_of(both.headers["Location"])["error"] == "access_denied"


def test_a_code_not_yet_redeemed_dies_with_the_consent(client, services, alice):
    from tests.helpers.oidc import exchange

    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    assert client.delete(f"/api/me/consents/{gallery.client_id}").status_code == 200
    refused = exchange(client, gallery, secret, code)
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
