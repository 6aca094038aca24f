"""Configuration: `config/defaults.env`, overridden by `AUTHSERVER_*` variables.

Parsed and validated once, at start-up. Nothing below the factory reads
`os.environ`. A bad value raises `SettingsError` with one line naming the
variable and what is expected; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formataddr, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .access_rules import (
    POLICIES,
    AccessRules,
    HostPattern,
    IPNetwork,
    RuleError,
    load_rules,
    parse_host_patterns,
    parse_networks,
)

PREFIX = "AUTHSERVER_"
DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "defaults.env"

# OWASP's minimum for argon2id: m=19 MiB, t=2, p=1.
OWASP_ARGON2_MEMORY_KIB = 19 * 1024
OWASP_ARGON2_TIME_COST = 2

CSRF_TOKEN_SECONDS = 2 * 3600
DEFAULT_KEY_SCOPES = ("profile", "photos:read", "photos:write", "admin")
# RFC 6749 section 3.3 scope-token: printable ASCII except space, `"` and backslash.
_SCOPE_TOKEN = re.compile(r'^[\x21\x23-\x5B\x5D-\x7E]{1,64}$')
# Nobody's forwarding headers are believed unless the operator names the proxies.
DEFAULT_TRUSTED_PROXIES = ""
# Security notices (docs/email.md): a factor added or removed, the password changed, an API key
# minted, the email address changed (to the old address).
MAIL_NOTICES = ("factor_added", "factor_removed", "password_changed", "key_minted", "email_changed")


class SettingsError(Exception):
    """A configuration value is missing or malformed; the message is one line."""


@dataclass(frozen=True)
class Settings:
    env: str
    instance_path: Path
    issuer: str
    database_url: str
    secret_key: str
    master_keys: tuple[bytes, ...]  # the keyring at start; which one seals is the database's record
    pepper: bytes
    # The instance's master_key file when the keyring came from it (re-read when a key is
    # missing: keys added or retired there reach a running server); None: AUTHSERVER_MASTER_KEY.
    master_key_file: Path | None = None
    redis_url: str | None = None
    totp_required: str = "none"
    pkce_required: str = "all"
    # Refresh token families: idle (unused this long: dead) and absolute (since the login).
    refresh_idle_seconds: int = 30 * 24 * 3600
    refresh_absolute_seconds: int = 90 * 24 * 3600
    # A password change revokes the user's refresh tokens unless this is on.
    keep_refresh_on_password_change: bool = False
    # Every client must push its authorization requests (RFC 9126); per client: --require-par.
    require_par: bool = False
    workers: int = 2
    threads: int = 4  # per worker process
    session_idle_seconds: int = 8 * 3600
    session_absolute_seconds: int = 7 * 24 * 3600
    argon2_time_cost: int = OWASP_ARGON2_TIME_COST
    argon2_memory_kib: int = OWASP_ARGON2_MEMORY_KIB
    argon2_parallelism: int = 1
    # Password hashes one worker process computes at once; more wait their turn. Each holds
    # argon2_memory_kib while it runs, and beyond the cores a worker gets they only compete.
    password_hashes_at_once: int = 1
    log_level: str = "INFO"
    max_body_bytes: int = 1024 * 1024
    # Scopes an API key may carry; `admin` only ever for administrators.
    key_scopes: tuple[str, ...] = DEFAULT_KEY_SCOPES
    # Request headers an API key is read from (besides Authorization), e.g. X-PIWIGO-API.
    key_headers: tuple[str, ...] = ("X-API-Key",)
    # Forward-auth: who may tell us the original URL, where `next` may point, who may pass.
    trusted_proxies: tuple[IPNetwork, ...] = parse_networks(DEFAULT_TRUSTED_PROXIES)
    forward_auth_domains: tuple[HostPattern, ...] = ()
    forward_auth_rules: AccessRules = field(default_factory=AccessRules)
    forward_auth_redirect: str = "rd"
    # The hottest requests answered before Flask (authserver/dispatch.py); off only to rule it out.
    fast_lane: bool = True
    session_cookie_domain: str | None = None  # None: host-only cookie
    # /metrics: a bearer token and/or the networks allowed to scrape it (empty: anyone).
    metrics_token: str | None = None
    metrics_addresses: tuple[IPNetwork, ...] = ()
    # Mail (docs/email.md): both set, or mail is off. The URL may hold the relay's password:
    # never shown (repr, errors, logs).
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str | None = None
    # A PEM file of certificates to trust for the relay's TLS (a private CA); None: the system's.
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: int = 10
    # How long the links mailed stay good.
    reset_link_minutes: int = 30
    verify_link_hours: int = 48
    invitation_days: int = 7
    # Security notices mailed to users; each one can be left out.
    mail_notices: tuple[str, ...] = MAIL_NOTICES
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def mail_enabled(self) -> bool:
        return bool(self.smtp_url and self.mail_from)

    @property
    def is_https(self) -> bool:
        return self.issuer.startswith("https://")

    def cookie_name(self, base: str, *, shared_domain: bool = False) -> str:
        """A cookie's name: `__Host-` on https (ASVS 3.3.1: Secure, Path=/, no Domain, so no
        sibling host can set or shadow it), `__Secure-` for the session cookie when it is shared
        with a parent domain (AUTHSERVER_SESSION_COOKIE_DOMAIN); plain on http. Cookies under
        an earlier name are ignored: their holders simply log in again."""
        if not self.is_https:
            return base
        return ("__Secure-" if shared_domain and self.session_cookie_domain else "__Host-") + base

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def flask_config(self) -> dict:
        return {
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options(self.database_url),
            # One byte of slack so that a body of unknown length can be seen to exceed the limit.
            "MAX_CONTENT_LENGTH": self.max_body_bytes + 1,
            "SESSION_COOKIE_NAME": self.cookie_name("authserver_form"),
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": self.is_https,
            "WTF_CSRF_CHECK_DEFAULT": False,
            # A form's CSRF token is good for two hours; its secret changes at login and logout.
            "WTF_CSRF_TIME_LIMIT": CSRF_TOKEN_SECONDS,
            "WTF_CSRF_SSL_STRICT": False,
            "JSON_SORT_KEYS": False,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        values = read_defaults(DEFAULTS_FILE)
        values.update({k: v for k, v in environ.items() if k.startswith(PREFIX)})

        def get(name: str, default: str | None = None) -> str | None:
            value = values.get(PREFIX + name, "")
            return value if value != "" else default

        env = choice(get("ENV", "development"), "ENV", ("development", "production", "test"))
        instance_path = Path(get("INSTANCE_PATH", "instance")).resolve()
        generate = env != "production"
        if generate:
            try:
                instance_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:  # a file in the way, no permission, a read-only disk
                raise SettingsError(
                    f"AUTHSERVER_INSTANCE_PATH {instance_path} cannot be a folder here ({exc.strerror or exc}); "
                    "name a folder this user may create or write"
                ) from None

        issuer = get("ISSUER", "http://127.0.0.1:5000")
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise SettingsError(
                f'AUTHSERVER_ISSUER must be an http(s) URL with no query or fragment (got "{issuer}")'
            )

        if env == "production" and parts.scheme == "http" and not _loopback_host(parts.hostname or ""):
            raise SettingsError(
                f'AUTHSERVER_ISSUER must be https:// in production (got "{issuer}"); plain http is only for a '
                "loopback issuer (cookies would travel unencrypted)"
            )

        database_url = get("DATABASE_URL") or f"sqlite:///{instance_path / 'authserver.db'}"
        database_url = check_database_url(database_url)

        secret_key = get("SECRET_KEY") or instance_secret(instance_path, "secret_key", generate, "SECRET_KEY")
        if len(secret_key) < 32:
            raise SettingsError("AUTHSERVER_SECRET_KEY must be at least 32 characters")

        master_key_file = None if get("MASTER_KEY") else instance_path / "master_key"
        master_raw = get("MASTER_KEY") or instance_secret(instance_path, "master_key", generate, "MASTER_KEY")
        master_keys = tuple(
            decode_key(part.strip(), "MASTER_KEY") for part in master_raw.split(",") if part.strip()
        )
        if not master_keys:
            raise SettingsError("AUTHSERVER_MASTER_KEY must hold at least one key")

        pepper_raw = get("PEPPER") or instance_secret(instance_path, "pepper", generate, "PEPPER")
        pepper = decode_key(pepper_raw, "PEPPER")
        folder = sqlite_folder(database_url)
        if folder is not None and not folder.is_dir():
            named = "DATABASE_URL" if get("DATABASE_URL") else "INSTANCE_PATH"
            raise SettingsError(
                f"{PREFIX}{named}: the SQLite database's folder {folder} does not exist; create it for the "
                "service's user (mode 700; in production nothing is created)"
            )

        redis_url = get("REDIS_URL")
        if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError(f'AUTHSERVER_REDIS_URL must be a redis:// URL (got "{redact(redis_url)}")')

        try:
            trusted_proxies = parse_networks(get("TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES))
        except RuleError as exc:
            raise SettingsError(f"AUTHSERVER_TRUSTED_PROXIES: {exc}") from None
        try:
            forward_auth_domains = parse_host_patterns(get("FORWARD_AUTH_DOMAINS", ""))
        except RuleError as exc:
            raise SettingsError(f"AUTHSERVER_FORWARD_AUTH_DOMAINS: {exc}") from None
        default_policy = choice(
            get("FORWARD_AUTH_DEFAULT_POLICY", "one_factor"),
            "FORWARD_AUTH_DEFAULT_POLICY",
            POLICIES,
        )
        try:
            forward_auth_rules = load_rules(get("FORWARD_AUTH_RULES", ""), default_policy, Path.cwd())
        except RuleError as exc:
            raise SettingsError(f"AUTHSERVER_FORWARD_AUTH_RULES: {exc}") from None

        metrics_token = get("METRICS_TOKEN")
        if metrics_token is not None and (len(metrics_token) < 16 or not metrics_token.isascii()
                                          or not metrics_token.isprintable() or " " in metrics_token):
            raise SettingsError(
                "AUTHSERVER_METRICS_TOKEN must be at least 16 printable ASCII characters without spaces"
            )
        try:
            metrics_addresses = parse_networks(get("METRICS_ADDRESSES", ""))
        except RuleError as exc:
            raise SettingsError(f"AUTHSERVER_METRICS_ADDRESSES: {exc}") from None

        session_cookie_domain = get("SESSION_COOKIE_DOMAIN")
        if session_cookie_domain:
            session_cookie_domain = check_cookie_domain(session_cookie_domain, parts.hostname or "")

        smtp_url = get("SMTP_URL")
        if smtp_url is not None:
            check_smtp_url(smtp_url)
        mail_from = get("MAIL_FROM")
        if mail_from is not None:
            mail_from = check_mail_from(mail_from)
        if bool(smtp_url) != bool(mail_from):
            given, missing = ("SMTP_URL", "MAIL_FROM") if smtp_url else ("MAIL_FROM", "SMTP_URL")
            raise SettingsError(f"{PREFIX}{given} needs {PREFIX}{missing} too: mail needs both (or neither: "
                                "mail is off)")
        smtp_ca_file = get("SMTP_CA_FILE")
        if smtp_ca_file is not None and not Path(smtp_ca_file).is_file():
            raise SettingsError(f'AUTHSERVER_SMTP_CA_FILE must name a readable PEM file (got "{smtp_ca_file}")')
        notices = tuple(dict.fromkeys(n.strip() for n in get("MAIL_NOTICES", ",".join(MAIL_NOTICES)).split(",")
                                      if n.strip() and n.strip() != "none"))
        for notice in notices:
            if notice not in MAIL_NOTICES:
                raise SettingsError(f'{PREFIX}MAIL_NOTICES must list some of {", ".join(MAIL_NOTICES)} or be "none" '
                                    f'(got "{notice[:40]}")')

        known = {f.name.upper() for f in dataclasses.fields(cls)}
        extra = {
            k[len(PREFIX) :]: v for k, v in values.items() if k.startswith(PREFIX) and k[len(PREFIX) :] not in known
        }
        workers = integer(get("WORKERS", "2"), "WORKERS", 1, 64)
        # By default a worker hashes as many passwords at once as it has cores to itself.
        hashes_at_once = get("PASSWORD_HASHES_AT_ONCE", "") or str(max(1, (os.cpu_count() or 1) // workers))
        return cls(
            env=env,
            instance_path=instance_path,
            issuer=issuer,
            database_url=database_url,
            secret_key=secret_key,
            master_keys=master_keys,
            master_key_file=master_key_file,
            pepper=pepper,
            redis_url=redis_url,
            # Who needs a second factor (TOTP or a passkey). SECOND_FACTOR_REQUIRED is the name that says
            # so; TOTP_REQUIRED, the older one, still works when the new one is not set.
            totp_required=(
                choice(get("SECOND_FACTOR_REQUIRED"), "SECOND_FACTOR_REQUIRED", ("none", "admins", "all"))
                if get("SECOND_FACTOR_REQUIRED") is not None
                else choice(get("TOTP_REQUIRED", "none"), "TOTP_REQUIRED", ("none", "admins", "all"))
            ),
            pkce_required=choice(get("PKCE_REQUIRED", "all"), "PKCE_REQUIRED", ("public", "all")),
            refresh_idle_seconds=integer(
                get("REFRESH_IDLE_SECONDS", str(30 * 24 * 3600)), "REFRESH_IDLE_SECONDS", 300, 10**9
            ),
            refresh_absolute_seconds=integer(
                get("REFRESH_ABSOLUTE_SECONDS", str(90 * 24 * 3600)), "REFRESH_ABSOLUTE_SECONDS", 300, 10**10
            ),
            keep_refresh_on_password_change=choice(
                get("KEEP_REFRESH_ON_PASSWORD_CHANGE", "off"), "KEEP_REFRESH_ON_PASSWORD_CHANGE", ("on", "off")
            )
            == "on",
            require_par=choice(get("REQUIRE_PAR", "off"), "REQUIRE_PAR", ("on", "off")) == "on",
            workers=workers,
            threads=integer(get("THREADS", "4"), "THREADS", 1, 64),
            session_idle_seconds=integer(get("SESSION_IDLE_SECONDS", str(8 * 3600)), "SESSION_IDLE_SECONDS", 60, 10**8),
            session_absolute_seconds=integer(
                get("SESSION_ABSOLUTE_SECONDS", str(7 * 24 * 3600)), "SESSION_ABSOLUTE_SECONDS", 60, 10**9
            ),
            argon2_time_cost=integer(get("ARGON2_TIME_COST", "2"), "ARGON2_TIME_COST", OWASP_ARGON2_TIME_COST, 100),
            argon2_memory_kib=integer(
                get("ARGON2_MEMORY_KIB", str(OWASP_ARGON2_MEMORY_KIB)),
                "ARGON2_MEMORY_KIB",
                OWASP_ARGON2_MEMORY_KIB,
                4 * 1024 * 1024,
            ),
            argon2_parallelism=integer(get("ARGON2_PARALLELISM", "1"), "ARGON2_PARALLELISM", 1, 64),
            password_hashes_at_once=integer(hashes_at_once, "PASSWORD_HASHES_AT_ONCE", 1, 64),
            log_level=choice(get("LOG_LEVEL", "INFO").upper(), "LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
            key_scopes=scope_list(get("KEY_SCOPES", " ".join(DEFAULT_KEY_SCOPES)), "KEY_SCOPES"),
            key_headers=header_names(get("KEY_HEADERS", "X-API-Key"), "KEY_HEADERS"),
            trusted_proxies=trusted_proxies,
            forward_auth_domains=forward_auth_domains,
            forward_auth_rules=forward_auth_rules,
            forward_auth_redirect=choice(
                get("FORWARD_AUTH_REDIRECT", "rd"), "FORWARD_AUTH_REDIRECT", ("rd", "browsers")
            ),
            fast_lane=choice(get("FAST_LANE", "on"), "FAST_LANE", ("on", "off")) == "on",
            session_cookie_domain=session_cookie_domain,
            metrics_token=metrics_token,
            metrics_addresses=metrics_addresses,
            smtp_url=smtp_url,
            mail_from=mail_from,
            smtp_ca_file=Path(smtp_ca_file).resolve() if smtp_ca_file else None,
            smtp_timeout_seconds=integer(get("SMTP_TIMEOUT_SECONDS", "10"), "SMTP_TIMEOUT_SECONDS", 1, 120),
            reset_link_minutes=integer(get("RESET_LINK_MINUTES", "30"), "RESET_LINK_MINUTES", 5, 24 * 60),
            verify_link_hours=integer(get("VERIFY_LINK_HOURS", "48"), "VERIFY_LINK_HOURS", 1, 30 * 24),
            invitation_days=integer(get("INVITATION_DAYS", "7"), "INVITATION_DAYS", 1, 90),
            mail_notices=notices,
            extra=extra,
        )


_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
# Headers that carry something else: a key is never read from them as a bare value.
_NOT_KEY_HEADERS = frozenset({"authorization", "cookie", "host", "content-type", "content-length", "connection",
                              "transfer-encoding", "forwarded", "x-forwarded-for", "x-real-ip", "x-original-url",
                              "x-forwarded-host", "x-forwarded-proto", "x-forwarded-uri", "x-forwarded-method"})


def header_names(text: str, name: str) -> tuple[str, ...]:
    """Comma-separated HTTP header names (letters, digits, dashes), at most 10, without the headers
    that mean something else (Authorization is always read as a key already)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not 1 <= len(names) <= 10:
        raise SettingsError(f"{PREFIX}{name} must list 1 to 10 header names, separated by commas")
    for header in names:
        if not _HEADER_NAME.fullmatch(header):
            raise SettingsError(f'{PREFIX}{name}: "{header[:64]}" is not a header name (letters, digits and -)')
        if header.lower() in _NOT_KEY_HEADERS:
            raise SettingsError(f"{PREFIX}{name}: {header} carries something else and cannot hold an API key")
    return tuple(dict.fromkeys(names))


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_defaults(path: Path) -> dict[str, str]:
    """`KEY=value` lines; `#` starts a comment line. Missing file: no defaults."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def choice(value: str, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SettingsError(f'{PREFIX}{name} must be one of {", ".join(allowed)} (got "{value}")')
    return value


def integer(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f'{PREFIX}{name} must be a whole number (got "{value}")') from None
    if not low <= number <= high:
        raise SettingsError(f"{PREFIX}{name} must be between {low} and {high} (got {number})")
    return number


def scope_list(value: str, name: str) -> tuple[str, ...]:
    """Space-separated scope tokens, deduplicated in order; at least one."""
    scopes = tuple(dict.fromkeys(value.split()))
    if not scopes:
        raise SettingsError(f"{PREFIX}{name} must list at least one scope")
    for scope in scopes:
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise SettingsError(
                f'{PREFIX}{name} must be space-separated scope names of printable characters (got "{scope}")'
            )
    return scopes


def redact(url: str) -> str:
    """A URL fit for an error message: any user:password@ part is masked."""
    return re.sub(r"(?<=://)[^/?#]*@", "***@", url)


SMTP_SCHEMES = ("smtp", "smtps", "smtp+plain")


def check_smtp_url(url: str) -> SmtpAddress:
    """`smtp://[user:pass@]host[:587]` (STARTTLS, required), `smtps://…[:465]` (TLS from the start),
    or `smtp+plain://…[:25]` (no TLS: a relay on this host only). The password never appears in
    an error."""
    expected = ("AUTHSERVER_SMTP_URL must be smtp://[user:password@]host[:port] (STARTTLS), smtps://… "
                "(TLS) or smtp+plain://… (loopback relays only)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SettingsError(f'{expected} (got "{redact(url)}")') from None
    if (parts.scheme not in SMTP_SCHEMES or not parts.hostname or parts.path not in ("", "/") or parts.query
            or parts.fragment or not url.isascii() or not url.isprintable()):
        raise SettingsError(f'{expected} (got "{redact(url)}")')
    if parts.scheme == "smtp+plain" and not _loopback_host(parts.hostname):
        raise SettingsError(f'AUTHSERVER_SMTP_URL: smtp+plain:// sends passwords and links unencrypted, so only to a '
                            f'relay on this host; use smtp:// (STARTTLS) or smtps:// (got "{redact(url)}")')
    default_port = {"smtp": 587, "smtps": 465, "smtp+plain": 25}[parts.scheme]
    return SmtpAddress(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True)
class SmtpAddress:
    """Where mail goes, from AUTHSERVER_SMTP_URL."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


_MAILBOX = re.compile(r"^[^@\s<>\x00-\x1f\x7f]+@[^@\s<>\x00-\x1f\x7f]+$")


def check_mail_from(value: str) -> str:
    """`auth@photos.example` or `Photos <auth@photos.example>`; one line, one address."""
    try:
        name, address = parseaddr(value, strict=True)
    except TypeError:  # Python before 3.11.10 has no `strict`
        name, address = parseaddr(value)
    if not address or not _MAILBOX.fullmatch(address) or not value.isprintable() or len(value) > 320:
        shown = value[:80].encode("unicode_escape").decode("ascii")
        raise SettingsError(f'AUTHSERVER_MAIL_FROM must be an address like "Photos <auth@photos.example>" '
                            f'(got "{shown}")')
    return formataddr((name, address)) if name else address


def sqlite_folder(url: str) -> Path | None:
    """The folder of a SQLite database file (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).parent.resolve()


def check_database_url(url: str) -> str:
    expected = "AUTHSERVER_DATABASE_URL must be a sqlite:/// or postgresql:// URL"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise SettingsError(f'{expected} (got "{redact(url)}")') from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise SettingsError(f'{expected} (got "{redact(url)}")')
    if backend == "postgresql" and parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the only PostgreSQL driver we ship.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def check_cookie_domain(value: str, issuer_host: str) -> str:
    """A parent domain of the issuer's host: browsers drop a cookie for any other domain."""
    try:
        pattern = HostPattern.parse(value)
    except RuleError:
        pattern = None
    if pattern is None or "." not in pattern.host or not HostPattern(pattern.host, True).matches(issuer_host):
        raise SettingsError(
            f'AUTHSERVER_SESSION_COOKIE_DOMAIN must be the issuer\'s host or a parent domain of it (got "{value}")'
        )
    return pattern.host


def engine_options(url: str) -> dict:
    # hide_parameters: a logged database error never carries the row values (hashes, sealed secrets).
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 15, "check_same_thread": False}, "hide_parameters": True}
    # No pool_pre_ping (a round trip per request): extensions.check_pooled_connections
    # tests a connection at check-out only when it may be stale. The connect timeout keeps
    # a request from hanging on an unreachable host.
    return {
        "pool_size": 10,
        "max_overflow": 20,
        "pool_recycle": 1800,
        "pool_timeout": 10,
        "hide_parameters": True,
        "connect_args": {"connect_timeout": 5},
    }


def decode_key(text: str, name: str) -> bytes:
    """A 32-byte key, base64url (padding optional)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise SettingsError(f"{PREFIX}{name} must be 32 bytes, base64url-encoded (43 characters)")
    return raw


def new_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def instance_secret(instance_path: Path, filename: str, generate: bool, name: str) -> str:
    """Read a secret from the instance folder, creating it (owner-only) if allowed."""
    path = instance_path / filename
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    if not generate:
        raise SettingsError(f"{PREFIX}{name} must be set when AUTHSERVER_ENV=production")
    value = secrets.token_urlsafe(48) if filename == "secret_key" else new_key_text()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the same start-up won the race
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value
