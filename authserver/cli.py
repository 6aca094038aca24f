"""The `authserver` command line.

With `--json` a command prints one JSON object; credentials appear in it
once, at creation, and nowhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

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
        from werkzeug.serving import run_simple

        app = current_app._get_current_object()
        app.config["TEMPLATES_AUTO_RELOAD"] = True
        # Reloader only: the interactive debugger would run code for anyone who can reach the port.
        # Restart on source changes; compiled bytecode being rewritten is not one.
        run_simple(host, port, app, use_reloader=True, use_debugger=False, threaded=True,
                   exclude_patterns={"*/__pycache__/*", "*.pyc"})
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
@with_appcontext
def seed(url):
    """Create the first admin (once); print its credentials the one time they exist."""
    from .accounts.models import User
    from .crypto import random_token
    from .extensions import db

    base = url or services().settings.issuer
    if db.session.scalar(db.select(User).limit(1)) is not None:
        click.echo(f"authserver: already set up; serving at {base} (sign in at {base}/login)")
        return
    password = random_token(15)
    services().accounts.create_user(
        "admin", email="admin@localhost", name="Administrator", password=password, is_admin=True, actor="cli"
    )
    click.echo("")
    click.echo("  authserver is set up. These credentials are shown once; keep them.")
    click.echo("")
    click.echo("  admin username : admin")
    click.echo(f"  admin password : {password}")
    click.echo(f"  sign in        : {base}/login")
    click.echo(f"  discovery      : {base}/.well-known/openid-configuration")
    click.echo(f"  health         : {base}/healthz  {base}/readyz")
    click.echo("")


def main():
    # Keep Flask's CLI from looking for FLASK_APP or .env files: this app is ours.
    os.environ.pop("FLASK_APP", None)
    cli(prog_name="authserver")


if __name__ == "__main__":
    main()
