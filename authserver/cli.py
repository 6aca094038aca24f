"""The `authserver` command line.

With `--json` a command prints one JSON object; credentials appear in it
once, at creation, and nowhere else.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext
from werkzeug.serving import run_simple

import keyvault

from . import create_app, schema
from .accounts.models import User
from .accounts.service import AccountError
from .crypto import SecretSealer, key_id, random_token
from .errors import DomainError
from .extensions import db
from .oidc.clients import GRANT_ALIASES, GRANT_TYPES, ClientError
from .oidc.signing import SigningKeyError
from .sealing import RotationFailed, read_keyring, rotate_master_key, unused_keys
from .settings import Settings, SettingsError, decode_key, new_key_text


def _make_app():

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


@click.group()
def cli():
    """authserver: OAuth 2.0 / OpenID Connect provider, API-key vault and TOTP.

    Configured by AUTHSERVER_* environment variables (config/defaults.env lists them)."""


# The key vault's commands live with it (keyvault/cli.py), on its blueprint's group.
cli.add_command(keyvault.bp.cli, "key")


@cli.group("db")
def schema_commands():
    """The database schema: create it, upgrade it before a new version starts, see where it is."""


@schema_commands.command("upgrade")
@with_appcontext
def db_upgrade():
    """Create the schema, or migrate it to this version's (safe to run again)."""
    schema.upgrade()


@schema_commands.command("current")
@with_appcontext
def db_current():
    """Print the schema revision the database is at."""
    schema.current()


def refuse_a_bound_port(host: str, port: int) -> None:
    """Another server (another authserver, say) listening there: one line, exit 2. Granian
    binds with SO_REUSEPORT, so without this check two servers would share the port silently."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        fail(f"cannot resolve --host {host}: {exc.strerror or exc}", 2)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use (is another server running?); stop it or "
                     "choose another --port", 2)
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 2)


def warn_if_facing_clients(host: str) -> None:
    """Granian gives a request body no time limit: facing clients directly, slow senders hold
    its threads. Behind a proxy that buffers bodies (docs/deploy.md) they never reach it."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        click.echo(f"authserver: warning: listening on {host}, not loopback: put a reverse proxy that buffers "
                   "request bodies in front (nginx does by default; docs/deploy.md)", err=True)


def announce_issuer(host: str, port: int) -> None:
    """Say which issuer the server runs with. Unset, it follows --host and --port (a wildcard
    host: loopback), so that a development server on another port is its own issuer; the
    processes started from here (Granian's workers, the reloader's child) inherit it."""
    issuer = os.environ.get("AUTHSERVER_ISSUER", "").strip()
    if issuer:
        click.echo(f"authserver: serving on {host}:{port}; issuer {issuer} (AUTHSERVER_ISSUER)", err=True)
        return
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    os.environ["AUTHSERVER_ISSUER"] = issuer = f"http://{shown}:{port}"
    click.echo(f"authserver: serving on {host}:{port}; issuer {issuer} (AUTHSERVER_ISSUER is not set: it follows "
               "--host and --port; set it to the public URL behind a proxy)", err=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--dev", is_flag=True, help="Flask's reloading development server instead of Granian.")
@with_appcontext
def serve(host: str, port: int, dev: bool):
    """Serve the app (Granian: AUTHSERVER_WORKERS processes of AUTHSERVER_THREADS threads)."""
    if not os.environ.get("WERKZEUG_RUN_MAIN"):  # the reloader's child runs on the socket its parent bound
        refuse_a_bound_port(host, port)
        announce_issuer(host, port)
        warn_if_facing_clients(host)
    settings = services().settings
    if settings.env == "production" and settings.is_https and not settings.trusted_proxies:
        # Behind a TLS-ending proxy every client would seem to be the proxy: one client's failed
        # logins would throttle everyone, and audit rows and key address ranges would see the proxy.
        click.echo("authserver: warning: AUTHSERVER_TRUSTED_PROXIES is empty: behind a reverse proxy, set it to the "
                   "proxy's address so that throttles, audit and key address ranges see each client's own "
                   "(docs/deploy.md)", err=True)
    if dev:

        app = current_app._get_current_object()
        app.config["TEMPLATES_AUTO_RELOAD"] = True
        # Reloader only: the interactive debugger would run code for anyone who can reach the port.
        # Restart on source changes; compiled bytecode being rewritten is not one.
        run_simple(host, port, app, use_reloader=True, use_debugger=False, threaded=True,
                   exclude_patterns={"*/__pycache__/*", "*.pyc"})
        return
    # prometheus-client picks its multi-process mode when it is imported, so the
    # variable must be set before the workers import the app: exec a fresh server process.
    metrics_dir = settings.instance_path / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    args = [
        sys.executable, "-m", "authserver.server",
        "--host", host,
        "--port", str(port),
        "--workers", str(settings.workers),
        "--threads", str(settings.threads),
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
@click.option("--invite", is_flag=True, help="No password: mail the user a link to choose one (docs/email.md).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def user_create(username, email, name, password, admin, groups, invite, as_json):
    """Create a user."""

    if invite:
        try:
            created, _ = services().admin.create_user(actor="cli", username=username, email=email, name=name,
                                                      groups=groups, is_admin=admin, password=password,
                                                      invite=True)
        except AccountError as exc:
            fail(str(exc))
        emit(as_json, {"id": created.id, "username": created.username, "sub": created.sub, "invited": True},
             f"created user {created.username} (id {created.id}); an invitation is on its way to {created.email}")
        return
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


@cli.group()
def mail():
    """Mail over SMTP (docs/email.md)."""


@mail.command("test")
@click.option("--to", "recipient", required=True, help="The address to send a test message to.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def mail_test(recipient, as_json):
    """Send a test message now, through AUTHSERVER_SMTP_URL; exit 1 when the relay refused it."""
    try:
        row = services().mail.send_test(recipient, actor="cli")
    except DomainError as exc:
        fail(exc.description)
    if row.sent_at is None:
        emit(as_json, {"sent": False, "error": row.last_error, "id": row.id},
             f"not sent: {row.last_error} (the outbox tries again; see docs/email.md)")
        sys.exit(1)
    emit(as_json, {"sent": True, "id": row.id}, f"test message sent to {row.recipient}")


@mail.command("drain")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def mail_drain(as_json):
    """Send every message that is due now (the servers' worker threads do this by themselves)."""
    outbox = services().mail.outbox
    if outbox is None:
        fail("mail is off: set AUTHSERVER_SMTP_URL and AUTHSERVER_MAIL_FROM")
    drained = outbox.drain(limit=1000)
    emit(as_json, {"sent": drained.sent, "retrying": drained.retrying, "given_up": drained.given_up},
         f"sent {drained.sent}, to retry {drained.retrying}, given up {drained.given_up}")


@cli.group()
def totp():
    """Manage users' second factor."""


@totp.command("reset")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def totp_reset(username, as_json):
    """Remove a user's TOTP secret and recovery codes (they set it up again at the next login)."""
    user = services().accounts.find(username)
    if user is None:
        fail(f'there is no user "{username}"')
    had_totp = services().totp.reset(user, actor="cli")
    text = f"reset two-factor authentication of {user.username}" if had_totp else f"{user.username} had no TOTP set up"
    emit(as_json, {"username": user.username, "reset": True, "had_totp": had_totp}, text)


@cli.group()
def passkey():
    """Manage users' passkeys."""


@passkey.command("reset")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def passkey_reset(username, as_json):
    """Remove every passkey of a user (a lost device); they add new ones from their account page."""
    user = services().accounts.find(username)
    if user is None:
        fail(f'there is no user "{username}"')
    removed = services().passkeys.reset(user, actor="cli")
    emit(as_json, {"username": user.username, "reset": True, "removed": removed},
         f"removed {removed} passkey{'s' if removed != 1 else ''} of {user.username}")


@cli.group("master-key")
def master_key():
    """The master keyring that seals TOTP secrets, signing keys and broker secrets.

    Rotation, while servers run: `add` a key to every server's keyring, `rotate` to it
    (every sealed value re-sealed, in one transaction), `retire` the old one; `check`
    says what is sealed under which key and what does not open."""


# What to do when a value of a kind does not open under any key of the keyring.
LOST_VALUE_ADVICE = {
    "totp_secrets": "reset the user's second factor (authserver totp reset USER)",
    "signing_keys": "start signing with new keys (authserver signing-key rotate)",
    "client_secrets": "rotate the client's secret in the admin console",
    "broker_verifiers": "nothing: the login transaction expires within minutes",
}


def _keyring() -> tuple[list[bytes], Path | None]:
    """This instance's keyring as it is now (the file read again), and the file it lives in, if any."""
    settings = services().settings
    path = settings.master_key_file
    if path is not None:
        keys = list(read_keyring(path))
        if keys:
            return keys, path
    return list(settings.master_keys), None


def _new_key(new_key: str | None) -> tuple[str, bytes]:
    key_text = new_key_text() if new_key is None else new_key.strip()
    try:
        return key_text, decode_key(key_text, "MASTER_KEY")
    except SettingsError:
        fail("--new-key must be 32 bytes, base64url-encoded (43 characters)", 2)


def _environment_keys_hint(keys: list[bytes]) -> str:
    return "AUTHSERVER_MASTER_KEY=" + ",".join(f"<key {key_id(k)}>" for k in keys)


@master_key.command("add")
@click.option("--new-key", default=None, help="The key to add (32 bytes, base64url). Omit to generate one.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def master_key_add(new_key, as_json):
    """Step 1: a new key joins the keyring; it opens values, nothing is sealed with it yet."""
    key_text, key = _new_key(new_key)
    keys, path = _keyring()
    kid = key_id(key)
    payload = {"key_id": kid, "stored_in": str(path) if path else None}
    if path is not None:
        if kid not in {key_id(k) for k in keys}:
            _append_to_keyring(path, key_text)
        text = (f"master key {kid} added to {path}; servers reading that file use it when they need it.\n"
                f"next: authserver master-key rotate --to {kid}")
    else:
        if new_key is None:
            payload["master_key"] = key_text
        text = ((f"new master key (shown once): {key_text}\n" if new_key is None else "")
                + f"set {_environment_keys_hint([*keys, key])} on every server and restart them one at a time; "
                f"then: authserver master-key rotate --to {kid}")
    emit(as_json, payload, text)


@master_key.command("rotate")
@click.option("--to", "to_key_id", default=None, help="Seal with this key of the keyring from now on.")
@click.option("--new-key", default=None, help="Seal with this key (added to the keyring file if it is not there).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def master_key_rotate(to_key_id, new_key, as_json):
    """Step 2: every server seals with the new key from now on; every value is re-sealed under it.

    With the keyring in the instance's master_key file and no option, a new key is
    generated, added to the file and rotated to in one go. From AUTHSERVER_MASTER_KEY the
    key must be in every server's keyring first (`master-key add`): servers without it
    could not open what is re-sealed."""
    if to_key_id and new_key:
        fail("give --to or --new-key, not both", 2)
    keys, path = _keyring()
    by_id = {key_id(k): k for k in keys}
    if to_key_id:
        key = by_id.get(to_key_id.strip())
        if key is None:
            fail(f"there is no key {to_key_id.strip()!r} in this server's keyring ({', '.join(by_id)}); "
                 "add it first: authserver master-key add")
    else:
        if new_key is None and path is None:
            fail("the keyring comes from AUTHSERVER_MASTER_KEY: add the new key to every server first "
                 "(authserver master-key add), then rotate to it with --to KEY_ID")
        key_text, key = _new_key(new_key)
        if key_id(key) not in by_id:
            if path is None:
                fail(f"key {key_id(key)} is not in AUTHSERVER_MASTER_KEY: set {_environment_keys_hint([*keys, key])} "
                     "on every server and restart them first (authserver master-key add says how)")
            _append_to_keyring(path, key_text)
            keys.append(key)
    try:
        rotation = rotate_master_key(services().sealed, keys, key, services().clock.now())
    except RotationFailed as exc:
        fail(f"nothing was changed: a sealed value does not open: {exc}; authserver master-key check lists them all")
    payload = {"key_id": rotation.key_id, "resealed": rotation.resealed, "generation": rotation.generation,
               "older_key_ids": rotation.older_key_ids, "stored_in": str(path) if path else None}
    counts = ", ".join(f"{n} {name}" for name, n in rotation.resealed.items())
    text = f"every server seals with master key {rotation.key_id} now; re-sealed {counts}"
    if rotation.older_key_ids:
        text += f"\nnext: authserver master-key retire (drops {', '.join(rotation.older_key_ids)} from the keyring)"
    emit(as_json, payload, text)


@master_key.command("retire")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def master_key_retire(as_json):
    """Step 3: keys that seal nothing any more leave the keyring (values still under one are re-sealed first)."""
    keys, path = _keyring()
    sealer = services().sealer
    missing = sealer.missing_sealing_key()
    if missing:
        fail(f"this server does not hold the sealing key {missing}: add it to its keyring first")
    sealing = next(k for k in keys if key_id(k) == sealer.current_key_id)
    try:
        # Stragglers (sealed under an older key while the rotation ran) move to the sealing key.
        resealed = services().sealed.reseal_all(SecretSealer([sealing, *(k for k in keys if k != sealing)]))
        db.session.commit()
    except RotationFailed as exc:
        db.session.rollback()
        fail(f"nothing was retired: a sealed value does not open: {exc}; authserver master-key check lists them all")
    unused, failures = unused_keys(services().sealed, sealer, keys)
    if failures:
        fail(f"nothing was retired: {len(failures)} sealed value(s) do not open; authserver master-key check")
    kept = [k for k in keys if k not in unused]
    payload = {"retired_key_ids": [key_id(k) for k in unused], "kept_key_ids": [key_id(k) for k in kept],
               "resealed": resealed, "stored_in": str(path) if path else None}
    if not unused:
        text = "nothing to retire: every key of the keyring is in use"
    elif path is not None:
        _write_secret_file(path, ",".join(_key_text(k) for k in kept))
        text = f"retired {', '.join(payload['retired_key_ids'])} from {path}"
    else:
        text = (f"nothing is sealed under {', '.join(payload['retired_key_ids'])} any more: set "
                f"{_environment_keys_hint(kept)} on every server (restart them one at a time)")
    emit(as_json, payload, text)


@master_key.command("check")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def master_key_check(as_json):
    """What is sealed under which key, what does not open and what to do; exit 1 when anything is wrong."""
    keys, path = _keyring()
    sealer = services().sealer
    report = services().sealed.inspect(sealer)
    missing = sealer.missing_sealing_key()
    payload = {
        "sealing_key_id": sealer.current_key_id,
        "keyring": [key_id(k) for k in keys],
        "sealing_key_missing": missing is not None,
        "kinds": {name: {"by_key": dict(found.by_key), "not_opening": found.failures}
                  for name, found in report.items()},
    }
    lines = [f"sealing key: {sealer.current_key_id}" + (" (NOT in this server's keyring)" if missing else ""),
             f"keyring: {', '.join(payload['keyring'])}" + (f" ({path})" if path else " (AUTHSERVER_MASTER_KEY)")]
    for name, found in report.items():
        under = ", ".join(f"{n} under {kid}" for kid, n in sorted(found.by_key.items())) or "none"
        lines.append(f"{name}: {under}")
        for failure in found.failures:
            lines.append(f"  does not open: {failure}: add its key back to the keyring, or "
                         f"{LOST_VALUE_ADVICE.get(name, 'reset it')}")
    emit(as_json, payload, "\n".join(lines))
    if missing or any(found.failures for found in report.values()):
        sys.exit(1)


def _append_to_keyring(path: Path, key_text: str) -> None:
    """A key added at the end of the keyring file (the keys before it unchanged)."""
    _write_secret_file(path, ",".join([path.read_text(encoding="utf-8").strip(), key_text]))


def _key_text(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def _write_secret_file(path, value: str) -> None:
    """Replace an owner-only secret file atomically."""
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.replace(temporary, path)


@cli.command()
@click.option("--url", default=None, help="The base URL the server will be reached at (for the printout).")
@click.option(
    "--demo-redirect-uri",
    default="http://127.0.0.1:8080/auth/callback",
    show_default=True,
    help="Where the demo client's logins return.",
)
@with_appcontext
def seed(url, demo_redirect_uri):
    """Create the first admin and a demo client (once each); print their credentials the one time they exist."""

    base = url or services().settings.issuer
    created_admin = created_client = None
    if db.session.scalar(db.select(User).limit(1)) is None:
        created_admin = random_token(15)
        services().accounts.create_user(
            "admin", email="admin@localhost", name="Administrator", password=created_admin, is_admin=True, actor="cli"
        )
    if services().oidc.clients.find_by_name(DEMO_CLIENT_NAME) is None:
        created_client = services().oidc.clients.create(
            name=DEMO_CLIENT_NAME,
            redirect_uris=[demo_redirect_uri],
            scope="openid profile email groups",
            grant_types=["authorization_code", "refresh_token"],
            actor="cli",
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
@click.option("--trusted", is_flag=True, help="Skip the consent page (an app the admin vouches for).")
@click.option(
    "--first-party",
    is_flag=True,
    help="This server's own app: its tokens work on this server's API (/api/*, forward-auth), it may "
    "hold scopes that manage this server (admin), and it skips consent.",
)
@click.option(
    "--introspect",
    is_flag=True,
    help="A resource server: may introspect tokens meant for it (its own and those naming it as "
    "audience) and API keys.",
)
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    help="client_id of a resource server (--introspect) this client's access tokens are also meant for; repeatable.",
)
@click.option(
    "--no-pkce", is_flag=True, help="Exempt this confidential client from PKCE (only for apps that cannot send it)."
)
@click.option(
    "--require-par",
    is_flag=True,
    help="Accept this client's authorization requests only when pushed first (RFC 9126, /oauth/par).",
)
@click.option(
    "--require-dpop",
    is_flag=True,
    help="Issue this client's tokens only to requests with a DPoP proof (RFC 9449): sender-constrained tokens.",
)
@click.option("--broker", is_flag=True, help="The broker may run the OAuth dance for this client.")
@click.option("--allow-missing-state", is_flag=True, help="Broker callbacks may omit state (old app versions).")
@click.option("--scope", default=None, help='Allowed scopes, e.g. "openid profile email groups".')
@click.option(
    "--grant",
    "grants",
    multiple=True,
    type=click.Choice([*GRANT_TYPES, *GRANT_ALIASES]),
    help="Allowed grant; repeatable (default: authorization_code only; add refresh_token for refresh tokens; "
    "device_code is short for urn:ietf:params:oauth:grant-type:device_code, for devices without a browser).",
)
@click.option(
    "--auth-method",
    default=None,
    type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
    help="Token endpoint authentication (default: client_secret_basic, or none when --public).",
)
@click.option("--jwks", default=None, help="The client's public JWKS for private_key_jwt: JSON, or @file.")
@click.option("--id-token-alg", default="RS256", show_default=True, type=click.Choice(["RS256", "ES256", "EdDSA"]))
@click.option("--access-token-format", default="opaque", show_default=True, type=click.Choice(["opaque", "jwt"]))
@click.option(
    "--extra-claim",
    "extra_claims",
    multiple=True,
    help="NAME=KIND:ARG, e.g. immich_role=admin_flag:admin:user or quota=attribute:quota_gb; repeatable.",
)
@click.option("--backchannel-logout-uri", default=None)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def client_create(
    name,
    redirect_uris,
    public,
    trusted,
    first_party,
    introspect,
    audiences,
    no_pkce,
    require_par,
    require_dpop,
    broker,
    allow_missing_state,
    scope,
    grants,
    auth_method,
    jwks,
    id_token_alg,
    access_token_format,
    extra_claims,
    backchannel_logout_uri,
    post_logout_redirect_uris,
    as_json,
):
    """Register a client; its secret is printed once."""

    jwks_doc = None
    if jwks:
        try:
            text = Path(jwks[1:]).read_text(encoding="utf-8") if jwks.startswith("@") else jwks
            jwks_doc = json.loads(text)
        except (OSError, ValueError, RecursionError) as exc:
            fail(f"--jwks is not readable JSON: {exc}")
    try:
        created = services().oidc.clients.create(
            name=name,
            redirect_uris=redirect_uris,
            public=public,
            trusted=trusted,
            first_party=first_party,
            introspect=introspect,
            audiences=audiences,
            pkce_required=not no_pkce,
            require_par=require_par,
            require_dpop=require_dpop,
            broker=broker,
            allow_missing_state=allow_missing_state,
            scope=scope,
            grant_types=grants,
            token_endpoint_auth_method=auth_method,
            id_token_signed_response_alg=id_token_alg,
            access_token_format=access_token_format,
            extra_claims=extra_claims,
            backchannel_logout_uri=backchannel_logout_uri,
            post_logout_redirect_uris=post_logout_redirect_uris,
            jwks=jwks_doc,
            actor="cli",
        )
    except ClientError as exc:
        fail(str(exc))
    row = created.row
    payload = {"client_id": row.client_id, "grant_types": list(row.grant_types), "scope": row.scope,
               "redirect_uris": list(row.redirect_uris)}
    text = f"created client {row.name}\nclient_id: {row.client_id}\ngrants: {' '.join(row.grant_types)}"
    if created.client_secret:
        payload["client_secret"] = created.client_secret
        text += f"\nclient_secret: {created.client_secret}"
    emit(as_json, payload, text)


@cli.command("after-restore")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def after_restore(as_json):
    """After restoring the database from a backup: end every SSO session, revoke every access and
    refresh token, and sign with new keys at once (the old ones withdrawn from JWKS), so nothing
    issued before the restore stays usable. Everyone logs in again; API keys are not touched."""
    ended = services().sessions.revoke_everyone()
    done = services().oidc.start_afresh(actor="cli")
    payload = {"ended_sessions": ended, **done}
    emit(as_json, payload, f"ended {ended} session(s), revoked {done['revoked_tokens']} token(s), withdrew "
         f"{len(done['withdrawn_keys'])} signing key(s); new keys {', '.join(done['signing_keys'])} sign from now on")


@cli.group("signing-key")
def signing_key():
    """Manage the keys that sign ID tokens and JWT access tokens."""


@signing_key.command("rotate")
@click.option("--now", "at_once", is_flag=True,
              help="Sign with the new keys at once (an emergency: clients whose cached JWKS lacks them fail "
                   "until they fetch it again).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def signing_key_rotate(at_once, as_json):
    """New keys, published at once, sign once clients' cached JWKS know them (a minute); the old
    public keys stay in JWKS until their tokens expire."""
    rotated = services().signing.rotate(now=at_once)
    services().audit.record("signing_key.rotate", actor="cli", target="signing_keys",
                            details={"kids": [r.kid for r in rotated], "now": at_once}, commit=True)
    keys = [{"kid": r.kid, "alg": r.alg, "signs_from": r.signs_from.isoformat()} for r in rotated]
    text = "\n".join(f"{r.alg}: {r.kid}, published now, signs from {r.signs_from.isoformat(timespec='seconds')}"
                     for r in rotated)
    emit(as_json, {"keys": keys, "kids": [r.kid for r in rotated]}, text)


@signing_key.command("revoke")
@click.argument("kid")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def signing_key_revoke(kid, as_json):
    """Withdraw a compromised key at once: out of JWKS, no longer signing, and the JWT access
    tokens it may have signed revoked (clients verifying ID tokens refuse it once they fetch JWKS)."""
    try:
        withdrawn, revoked = services().oidc.withdraw_signing_key(kid, actor="cli")
    except SigningKeyError as exc:
        fail(str(exc))
    emit(as_json, {"kid": withdrawn.kid, "alg": withdrawn.alg, "revoked_tokens": revoked},
         f"withdrew {withdrawn.alg} key {withdrawn.kid}; revoked {revoked} JWT access token(s) it may have signed")


def main():
    # Keep Flask's CLI from looking for FLASK_APP or .env files: this app is ours.
    os.environ.pop("FLASK_APP", None)
    cli(prog_name="authserver", obj=ScriptInfo(create_app=_make_app, set_debug_flag=False, load_dotenv_defaults=False))


if __name__ == "__main__":
    main()
