"""The `authserver` command line.

With `--json` a command prints one JSON object; credentials appear in it
once, at creation, and nowhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from .settings import Settings, SettingsError


def _make_app():
    from . import create_app

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        click.echo(f"authserver: {exc}", err=True)
        sys.exit(2)
    return create_app(settings)


def services():
    return current_app.extensions["authserver"]


def emit(as_json: bool, payload: dict, text: str) -> None:
    click.echo(json.dumps(payload) if as_json else text)


def fail(message: str, code: int = 1):
    click.echo(f"authserver: {message}", err=True)
    sys.exit(code)


@click.group(cls=FlaskGroup, create_app=_make_app, add_default_commands=False, add_version_option=False,
             load_dotenv=False, set_debug_flag=False)
def cli():
    """authserver: OAuth 2.0 / OpenID Connect provider, API-key vault and TOTP."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--dev", is_flag=True, help="Flask's reloading development server instead of gunicorn.")
@with_appcontext
def serve(host: str, port: int, dev: bool):
    """Serve the app (gunicorn, AUTHSERVER_WORKERS workers)."""
    settings = services().settings
    if dev:
        current_app.run(host=host, port=port, debug=True, use_reloader=True)
        return
    # prometheus-client picks its multi-process mode when it is imported, so the
    # variable must be set before the workers import the app: exec a fresh gunicorn.
    metrics_dir = settings.instance_path / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    args = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(settings.workers),
        "--config", "python:authserver.gunicorn_conf",
        "authserver:create_app()",
    ]
    sys.stdout.flush()
    os.execve(sys.executable, args, env)


@cli.group()
def user():
    """Manage users."""


@user.command("create")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--password", default=None, help="Omit to generate one (printed once).")
@click.option("--admin", is_flag=True)
@click.option("--group", "groups", multiple=True, help="Group membership; repeatable.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def user_create(username, email, name, password, admin, groups, as_json):
    """Create a user."""
    from .accounts.service import AccountError
    from .crypto import random_token

    generated = password is None
    if generated:
        password = random_token(15)
    try:
        created = services().accounts.create_user(
            username, email=email, name=name, password=password, is_admin=admin, groups=groups, actor="cli"
        )
    except AccountError as exc:
        fail(str(exc))
    payload = {"id": created.id, "username": created.username, "sub": created.sub}
    if generated:
        payload["password"] = password
    text = f"created user {created.username} (id {created.id})"
    if generated:
        text += f"\npassword: {password}"
    emit(as_json, payload, text)


@cli.command()
@click.option("--url", default=None, help="The base URL the server will be reached at (for the printout).")
@click.option("--demo-redirect-uri", default="http://127.0.0.1:8080/auth/callback", show_default=True,
              help="Where the demo client's logins return.")
@with_appcontext
def seed(url, demo_redirect_uri):
    """Create the first admin and a demo client (once each); print their credentials the one time they exist."""
    from .accounts.models import User
    from .crypto import random_token
    from .extensions import db

    base = url or services().settings.issuer
    created_admin = created_client = None
    if db.session.scalar(db.select(User).limit(1)) is None:
        created_admin = random_token(15)
        services().accounts.create_user(
            "admin", email="admin@localhost", name="Administrator", password=created_admin, is_admin=True, actor="cli"
        )
    if services().oidc.clients.find_by_name(DEMO_CLIENT_NAME) is None:
        created_client = services().oidc.clients.create(
            name=DEMO_CLIENT_NAME, redirect_uris=[demo_redirect_uri], scope="openid profile email groups",
            grant_types=["authorization_code", "refresh_token"], actor="cli",
        )
    if created_admin is None and created_client is None:
        click.echo(f"authserver: already set up; serving at {base} (sign in at {base}/login)")
        return
    click.echo("")
    click.echo("  authserver is set up. These credentials are shown once; keep them.")
    click.echo("")
    if created_admin:
        click.echo("  admin username : admin")
        click.echo(f"  admin password : {created_admin}")
    if created_client:
        click.echo(f"  demo client id : {created_client.row.client_id}")
        click.echo(f"  demo secret    : {created_client.client_secret}")
        click.echo(f"  demo redirect  : {demo_redirect_uri}")
    click.echo(f"  sign in        : {base}/login")
    click.echo(f"  discovery      : {base}/.well-known/openid-configuration")
    click.echo(f"  health         : {base}/healthz  {base}/readyz")
    click.echo("")


DEMO_CLIENT_NAME = "Demo gallery"


@cli.group()
def client():
    """Manage OAuth / OpenID Connect clients."""


@client.command("create")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI; repeatable.")
@click.option("--public", is_flag=True, help="No secret (mobile, desktop, SPA): PKCE S256 is required.")
@click.option("--trusted", is_flag=True, help="First-party: skip the consent page.")
@click.option("--broker", is_flag=True, help="The broker may run the OAuth dance for this client.")
@click.option("--allow-missing-state", is_flag=True, help="Broker callbacks may omit state (old app versions).")
@click.option("--scope", default=None, help='Allowed scopes, e.g. "openid profile email groups".')
@click.option("--grant", "grants", multiple=True,
              type=click.Choice(["authorization_code", "refresh_token", "client_credentials"]),
              help="Allowed grant; repeatable (default: authorization_code and refresh_token).")
@click.option("--auth-method", default=None,
              type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
              help="Token endpoint authentication (default: client_secret_basic, or none when --public).")
@click.option("--jwks", default=None, help="The client's public JWKS for private_key_jwt: JSON, or @file.")
@click.option("--id-token-alg", default="RS256", show_default=True, type=click.Choice(["RS256", "ES256", "EdDSA"]))
@click.option("--access-token-format", default="opaque", show_default=True, type=click.Choice(["opaque", "jwt"]))
@click.option("--extra-claim", "extra_claims", multiple=True,
              help="NAME=KIND:ARG, e.g. immich_role=admin_flag:admin:user or quota=attribute:quota_gb; repeatable.")
@click.option("--backchannel-logout-uri", default=None)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def client_create(name, redirect_uris, public, trusted, broker, allow_missing_state, scope, grants, auth_method,
                  jwks, id_token_alg, access_token_format, extra_claims, backchannel_logout_uri,
                  post_logout_redirect_uris, as_json):
    """Register a client; its secret is printed once."""
    from .oidc.service import ClientError

    jwks_doc = None
    if jwks:
        try:
            text = Path(jwks[1:]).read_text(encoding="utf-8") if jwks.startswith("@") else jwks
            jwks_doc = json.loads(text)
        except (OSError, ValueError) as exc:
            fail(f"--jwks is not readable JSON: {exc}")
    try:
        created = services().oidc.clients.create(
            name=name, redirect_uris=redirect_uris, public=public, trusted=trusted, broker=broker,
            allow_missing_state=allow_missing_state, scope=scope, grant_types=grants,
            token_endpoint_auth_method=auth_method, id_token_signed_response_alg=id_token_alg,
            access_token_format=access_token_format, extra_claims=extra_claims,
            backchannel_logout_uri=backchannel_logout_uri, post_logout_redirect_uris=post_logout_redirect_uris,
            jwks=jwks_doc, actor="cli",
        )
    except ClientError as exc:
        fail(str(exc))
    payload = {"client_id": created.row.client_id}
    text = f"created client {created.row.name}\nclient_id: {created.row.client_id}"
    if created.client_secret:
        payload["client_secret"] = created.client_secret
        text += f"\nclient_secret: {created.client_secret}"
    emit(as_json, payload, text)


@cli.group("signing-key")
def signing_key():
    """Manage the keys that sign ID tokens and JWT access tokens."""


@signing_key.command("rotate")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def signing_key_rotate(as_json):
    """New keys sign from now on; the old public keys stay in JWKS until their tokens expire."""
    kids = services().signing.rotate()
    emit(as_json, {"kids": kids}, "new signing keys: " + ", ".join(kids))


def main():
    # Keep Flask's CLI from looking for FLASK_APP or .env files: this app is ours.
    os.environ.pop("FLASK_APP", None)
    cli(prog_name="authserver")


if __name__ == "__main__":
    main()
