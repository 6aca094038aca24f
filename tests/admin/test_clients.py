"""Admin console, OAuth clients and signing keys: register (secret shown once), rotate the secret,
delete; rotate signing keys. Destructive actions need their box ticked; all are audited."""

from __future__ import annotations

import base64

from sqlalchemy import select

from authserver.audit.models import AuditEvent
from authserver.extensions import db
from authserver.oidc.signing import PUBLISH_AHEAD
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import make_client, make_user
from tests.helpers.html import browser_login, field_error, shown_value


def as_admin(client, services):
    make_user(services, "root", admin=True)
    assert browser_login(client, "root").status_code == 303


def client_credentials(client, client_id: str, secret: str):
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers={"Authorization": f"Basic {basic}"})


def audited(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def register(client, **fields):
    page = client.get("/admin/clients")
    data = {"csrf_token": csrf_token(page.text), "name": "Gallery", "redirect_uris": "https://gallery.example/cb",
            "token_endpoint_auth_method": "client_secret_basic", "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid profile email", "id_token_signed_response_alg": "RS256", "access_token_format": "opaque"}
    data.update(fields)
    return client.post("/admin/clients", data=data)


def test_admin_registers_a_client_and_sees_its_secret_once(client, services):
    as_admin(client, services)
    response = register(client, name="Uploader", grant_types=["client_credentials"], redirect_uris="",
                        is_trusted="y", extra_claims="gallery_role=admin_flag:admin:user\nsite=static:photos")
    assert response.status_code == 201
    secret = shown_value(response.text, "client-secret")
    client_id = shown_value(response.text, "client-id-value")
    row = services.oidc.clients.registered(client_id)
    assert row.is_trusted and set(row.extra_claims) == {"gallery_role", "site"}
    assert secret not in client.get(f"/admin/clients/{client_id}").text
    assert client_credentials(client.application.test_client(), client_id, secret).status_code == 200
    [event] = audited("client.create")
    assert event.actor == "user:root" and secret not in str(event.details)


def test_a_public_client_has_no_secret(client, services):
    as_admin(client, services)
    response = register(client, name="Phone app", token_endpoint_auth_method="none",
                        redirect_uris="app.example:///oauth-callback")
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert "Phone app" in page.text and "public" in page.text and 'id="client-secret"' not in page.text


def test_admin_registers_a_phone_app_that_must_push_and_use_dpop(client, services):
    as_admin(client, services)
    response = register(client, name="Phone app", token_endpoint_auth_method="none", require_par="y",
                        require_dpop="y", redirect_uris="app.example:///oauth-callback")
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert "required: authorization requests are pushed first" in page.text
    assert "required: every token is bound to the app" in page.text
    row = services.oidc.clients.find_by_name("Phone app")
    assert row.require_par and row.require_dpop
    [event] = audited("client.create")
    assert event.details["require_par"] is True and event.details["require_dpop"] is True


def test_registration_errors_stand_beside_the_setting_to_change(client, services):
    as_admin(client, services)
    no_redirect = register(client, redirect_uris="")
    assert no_redirect.status_code == 400 and "redirect" in field_error(no_redirect.text, "redirect_uris").lower()
    bad_claim = register(client, extra_claims="oops")
    assert bad_claim.status_code == 400 and "NAME=KIND:ARG" in field_error(bad_claim.text, "extra_claims")
    bad_jwks = register(client, token_endpoint_auth_method="private_key_jwt", jwks="[1, 2]")
    assert bad_jwks.status_code == 400 and "JSON object" in field_error(bad_jwks.text, "jwks")
    public_cc = register(client, token_endpoint_auth_method="none", grant_types=["client_credentials"])
    assert public_cc.status_code == 400
    assert 'aria-describedby="grant_types-error"' in public_cc.text and "client_credentials" in public_cc.text
    assert services.oidc.clients.list_registered() == []


def test_rotating_the_secret_needs_confirmation_and_retires_the_old_one(client, services):
    as_admin(client, services)
    gallery, old = make_client(services, "Gallery", grants=("client_credentials",), redirect_uris=())
    page = client.get(f"/admin/clients/{gallery.client_id}")
    token = csrf_token(page.text)
    refused = client.post(f"/admin/clients/{gallery.client_id}/rotate-secret", data={"csrf_token": token})
    assert refused.status_code == 400 and "Tick the box" in field_error(refused.text, "confirm-rotate-secret")
    rotated = client.post(f"/admin/clients/{gallery.client_id}/rotate-secret",
                          data={"csrf_token": token, "confirm": "y"})
    new = shown_value(rotated.text, "client-secret")
    assert rotated.status_code == 200 and new and new != old
    app_side = client.application.test_client()
    assert client_credentials(app_side, gallery.client_id, old).status_code == 401
    assert client_credentials(app_side, gallery.client_id, new).status_code == 200
    assert [e.actor for e in audited("client.secret_rotate")] == ["user:root"]


def test_deleting_a_client_refuses_it_and_revokes_its_tokens(client, services):
    as_admin(client, services)
    gallery, secret = make_client(services, "Gallery", grants=("client_credentials",), redirect_uris=())
    app_side = client.application.test_client()
    access = client_credentials(app_side, gallery.client_id, secret).json["access_token"]
    token = csrf_token(client.get(f"/admin/clients/{gallery.client_id}").text)
    assert client.post(f"/admin/clients/{gallery.client_id}/delete", data={"csrf_token": token}).status_code == 400
    assert services.oidc.clients.registered(gallery.client_id) is not None
    done = client.post(f"/admin/clients/{gallery.client_id}/delete", data={"csrf_token": token, "confirm": "y"})
    assert done.status_code == 303
    assert client.get(f"/admin/clients/{gallery.client_id}").status_code == 404
    assert client_credentials(app_side, gallery.client_id, secret).status_code == 401
    introspected = app_side.post("/oauth/introspect", data={"token": access})
    assert introspected.status_code in (200, 401) and not (introspected.json or {}).get("active")
    assert [e.details["revoked_tokens"] for e in audited("client.delete")] == [1]


def test_admin_rotates_signing_keys_and_the_old_key_stays_published(client, services):
    as_admin(client, services)
    first = {k["kid"] for k in client.get("/oauth/jwks").json["keys"]}
    page = client.get("/admin/signing-keys")
    assert all(kid in page.text for kid in first)
    token = csrf_token(page.text)
    assert client.post("/admin/signing-keys/rotate", data={"csrf_token": token}).status_code == 400
    assert client.post("/admin/signing-keys/rotate", data={"csrf_token": token, "confirm": "y"}).status_code == 303
    published = {k["kid"] for k in client.get("/oauth/jwks").json["keys"]}
    assert first < published
    page = client.get("/admin/signing-keys")
    # Published first; the old key signs until the new one takes over, then stays published.
    assert "published; signs from" in page.text and page.text.count('class="badge ok">signing<') == 3
    services.clock.advance(seconds=PUBLISH_AHEAD.total_seconds())
    page = client.get("/admin/signing-keys")
    assert "retired" in page.text and page.text.count('class="badge ok">signing<') == 3
    [event] = audited("signing_key.rotate")
    assert event.actor == "user:root" and set(event.details["kids"]) == published - first


def test_admin_registers_a_photo_frame_for_the_device_grant(client, services):
    as_admin(client, services)
    response = register(client, name="Frame", token_endpoint_auth_method="none", redirect_uris="",
                        grant_types=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
                        scope="openid profile offline_access")
    assert response.status_code == 303, response.text  # public: no secret to show once
    client_id = response.headers["Location"].rsplit("/", 1)[-1]
    page = client.get(f"/admin/clients/{client_id}")
    assert "urn:ietf:params:oauth:grant-type:device_code" in page.text
    started = client.application.test_client().post("/oauth/device_authorization",
                                                     data={"client_id": client_id, "scope": "openid"})
    assert started.status_code == 200 and started.json["user_code"]
