"""Start-up configuration (`authserver/settings.py`): every `AUTHSERVER_*` variable, good values and
bad values, checked in process through `Settings.from_env`. A bad value is one `SettingsError` whose
message is one line naming the variable; one real `authserver serve` start-up proves the command line
turns that into one line on stderr and exit code 2."""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import stat

import pytest

from authserver.settings import (
    DEFAULT_KEY_SCOPES,
    DEFAULTS_FILE,
    PREFIX,
    Settings,
    SettingsError,
    new_key_text,
    read_defaults,
)
from tests.helpers.servers import Instance

# Fixed keys, so that a row can say which bytes a setting decodes to.
KEY_A_BYTES, KEY_B_BYTES = bytes(range(32)), bytes(range(32, 64))
KEY_A, KEY_B = (base64.urlsafe_b64encode(raw).decode().rstrip("=") for raw in (KEY_A_BYTES, KEY_B_BYTES))
SECRETS = {"AUTHSERVER_SECRET_KEY": "s" * 40, "AUTHSERVER_MASTER_KEY": KEY_A, "AUTHSERVER_PEPPER": KEY_B}
PRODUCTION = {"AUTHSERVER_ENV": "production", **SECRETS}
HTTPS = {"AUTHSERVER_ISSUER": "https://auth.photos.test"}
RULES = [{"host": "photos.test", "path": "/admin", "policy": "two_factor", "groups": ["admins"]},
         {"host": ".photos.test", "policy": "one_factor"}]

# Every variable config/defaults.env documents.
VARIABLES = {key[len(PREFIX):] for key in read_defaults(DEFAULTS_FILE)}
# Variables whose values are secrets: an error message never repeats them.
SECRET_VARIABLES = {"SECRET_KEY", "MASTER_KEY", "PEPPER", "METRICS_TOKEN"}
# Mail needs both a relay and a sender.
SENDER = "Photos <auth@photos.test>"
RELAY = {"AUTHSERVER_SMTP_URL": "smtp://relay:s3cret@mail.photos.test"}


def from_env(tmp_path, **values: str) -> Settings:
    """`Settings.from_env` with an instance folder of the test's own and `values` as AUTHSERVER_*."""
    (tmp_path / "instance").mkdir(exist_ok=True)  # production creates nothing
    environ = {"AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance")}
    environ.update({key if key.startswith(PREFIX) else PREFIX + key: value for key, value in values.items()})
    return Settings.from_env(environ)


def rules_view(rules) -> tuple:
    return len(rules.rules), rules.default_policy, rules.match("photos.test", "/admin/users").policy


# How a row's attribute is compared: networks, host patterns and rules by what they say.
VIEWS = {
    "trusted_proxies": lambda v: [str(n) for n in v],
    "metrics_addresses": lambda v: [str(n) for n in v],
    "forward_auth_domains": lambda v: [str(p) for p in v],
    "forward_auth_rules": rules_view,
}


def good(name: str, value: str, attribute: str, expected, *, id: str | None = None, **context: str):
    """A value `from_env` takes: `attribute` of the settings is then `expected`. `context`: other
    variables the value needs (an https issuer, production secrets)."""
    return pytest.param(name, value, attribute, expected, context, id=id or f"{name}={value}")


def bad(name: str, value: str, message: str, *, id: str | None = None, marks=(), **context: str):
    """A value `from_env` refuses with one line naming the variable and saying `message`."""
    return pytest.param(name, value, message, context, id=id or f"{name}={value}", marks=marks)


GOOD = [
    good("ENV", "development", "env", "development"),
    good("ENV", "test", "env", "test"),
    good("ENV", "production", "env", "production", **SECRETS),
    good("ISSUER", "https://auth.photos.example", "issuer", "https://auth.photos.example"),
    good("ISSUER", "https://photos.example/auth", "issuer", "https://photos.example/auth"),
    good("ISSUER", "http://127.0.0.1:5000", "issuer", "http://127.0.0.1:5000"),
    # Production takes plain http only for a loopback issuer.
    good("ISSUER", "http://127.0.0.1:5000", "issuer", "http://127.0.0.1:5000", id="ISSUER=prod-127.0.0.1",
         **PRODUCTION),
    good("ISSUER", "http://localhost:8000", "issuer", "http://localhost:8000", id="ISSUER=prod-localhost",
         **PRODUCTION),
    good("ISSUER", "http://[::1]:8000", "issuer", "http://[::1]:8000", id="ISSUER=prod-[::1]", **PRODUCTION),
    good("DATABASE_URL", "sqlite:////tmp/auth.db", "database_url", "sqlite:////tmp/auth.db"),
    # psycopg 3 is the driver for a plain postgresql:// URL (ids avoid the word: `-k "not postgresql"`
    # leaves out only the PostgreSQL-backend cases).
    good("DATABASE_URL", "postgresql://auth:pw@db.internal/auth", "database_url",
         "postgresql+psycopg://auth:pw@db.internal/auth", id="DATABASE_URL=pg-url-gets-psycopg", **PRODUCTION),
    good("DATABASE_URL", "postgresql+psycopg://auth@db.internal:5433/auth", "database_url",
         "postgresql+psycopg://auth@db.internal:5433/auth", id="DATABASE_URL=pg-psycopg-url-kept"),
    good("SECRET_KEY", "k" * 32, "secret_key", "k" * 32, id="SECRET_KEY=32-characters"),
    good("MASTER_KEY", KEY_A, "master_keys", (KEY_A_BYTES,), id="MASTER_KEY=one"),
    # The first key seals, the others only open; spaces and empty parts are ignored.
    good("MASTER_KEY", f" {KEY_B} , {KEY_A} ,", "master_keys", (KEY_B_BYTES, KEY_A_BYTES), id="MASTER_KEY=two"),
    good("MASTER_KEY", KEY_A + "=", "master_keys", (KEY_A_BYTES,), id="MASTER_KEY=padded"),
    good("PEPPER", KEY_B, "pepper", KEY_B_BYTES, id="PEPPER=key"),
    good("REDIS_URL", "redis://127.0.0.1:6379/0", "redis_url", "redis://127.0.0.1:6379/0"),
    good("REDIS_URL", "rediss://cache.internal:6380/1", "redis_url", "rediss://cache.internal:6380/1"),
    good("REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
    good("TOTP_REQUIRED", "none", "totp_required", "none"),
    good("TOTP_REQUIRED", "admins", "totp_required", "admins"),
    good("TOTP_REQUIRED", "all", "totp_required", "all"),
    good("SECOND_FACTOR_REQUIRED", "admins", "totp_required", "admins"),
    good("SECOND_FACTOR_REQUIRED", "all", "totp_required", "all"),
    good("SECOND_FACTOR_REQUIRED", "none", "totp_required", "none", id="SECOND_FACTOR_REQUIRED=wins-over-old-name",
         TOTP_REQUIRED="all"),
    good("PKCE_REQUIRED", "public", "pkce_required", "public"),
    good("PKCE_REQUIRED", "all", "pkce_required", "all"),
    good("REFRESH_IDLE_SECONDS", "300", "refresh_idle_seconds", 300),
    good("REFRESH_IDLE_SECONDS", str(10**9), "refresh_idle_seconds", 10**9),
    good("REFRESH_ABSOLUTE_SECONDS", "300", "refresh_absolute_seconds", 300),
    good("REFRESH_ABSOLUTE_SECONDS", str(10**10), "refresh_absolute_seconds", 10**10),
    good("KEEP_REFRESH_ON_PASSWORD_CHANGE", "on", "keep_refresh_on_password_change", True),
    good("KEEP_REFRESH_ON_PASSWORD_CHANGE", "off", "keep_refresh_on_password_change", False),
    good("REQUIRE_PAR", "on", "require_par", True),
    good("REQUIRE_PAR", "off", "require_par", False),
    good("WORKERS", "1", "workers", 1),
    good("WORKERS", "64", "workers", 64),
    good("THREADS", "1", "threads", 1),
    good("THREADS", "64", "threads", 64),
    good("FAST_LANE", "on", "fast_lane", True),
    good("FAST_LANE", "off", "fast_lane", False),
    good("SESSION_IDLE_SECONDS", "60", "session_idle_seconds", 60),
    good("SESSION_IDLE_SECONDS", str(10**8), "session_idle_seconds", 10**8),
    good("SESSION_ABSOLUTE_SECONDS", "60", "session_absolute_seconds", 60),
    good("SESSION_ABSOLUTE_SECONDS", str(10**9), "session_absolute_seconds", 10**9),
    good("ARGON2_TIME_COST", "2", "argon2_time_cost", 2),
    good("ARGON2_TIME_COST", "100", "argon2_time_cost", 100),
    good("ARGON2_MEMORY_KIB", "19456", "argon2_memory_kib", 19456),
    good("ARGON2_MEMORY_KIB", str(4 * 1024 * 1024), "argon2_memory_kib", 4 * 1024 * 1024),
    good("ARGON2_PARALLELISM", "1", "argon2_parallelism", 1),
    good("ARGON2_PARALLELISM", "64", "argon2_parallelism", 64),
    good("PASSWORD_HASHES_AT_ONCE", "1", "password_hashes_at_once", 1),
    good("PASSWORD_HASHES_AT_ONCE", "64", "password_hashes_at_once", 64),
    good("KEY_SCOPES", "profile photos:read profile", "key_scopes", ("profile", "photos:read")),
    good("KEY_SCOPES", "photos:read", "key_scopes", ("photos:read",)),
    good("KEY_HEADERS", "X-API-Key, X-PIWIGO-API,", "key_headers", ("X-API-Key", "X-PIWIGO-API"), id="KEY_HEADERS=two"),
    good("KEY_HEADERS", "X-Immich-Key", "key_headers", ("X-Immich-Key",)),
    good("LOG_LEVEL", "debug", "log_level", "DEBUG"),
    good("LOG_LEVEL", "ERROR", "log_level", "ERROR"),
    good("METRICS_TOKEN", "t" * 16, "metrics_token", "t" * 16, id="METRICS_TOKEN=16-characters"),
    good("METRICS_ADDRESSES", "127.0.0.1/32, 10.0.0.0/8,", "metrics_addresses", ["127.0.0.1/32", "10.0.0.0/8"]),
    good("SESSION_COOKIE_DOMAIN", "photos.test", "session_cookie_domain", "photos.test", **HTTPS),
    good("SESSION_COOKIE_DOMAIN", ".photos.test", "session_cookie_domain", "photos.test", **HTTPS),
    good("SESSION_COOKIE_DOMAIN", "auth.photos.test", "session_cookie_domain", "auth.photos.test", **HTTPS),
    good("TRUSTED_PROXIES", "127.0.0.1/32", "trusted_proxies", ["127.0.0.1/32"]),
    good("TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8", "trusted_proxies", ["10.0.0.0/8", "fd00::/8"]),
    good("FORWARD_AUTH_DOMAINS", "photos.test,.gallery.test", "forward_auth_domains",
         ["photos.test", ".gallery.test"]),
    good("FORWARD_AUTH_RULES", json.dumps(RULES), "forward_auth_rules", (2, "one_factor", "two_factor"),
         id="FORWARD_AUTH_RULES=inline-json"),
    good("FORWARD_AUTH_DEFAULT_POLICY", "deny", "forward_auth_rules", (0, "deny", "deny")),
    good("FORWARD_AUTH_DEFAULT_POLICY", "bypass", "forward_auth_rules", (0, "bypass", "bypass")),
    good("FORWARD_AUTH_REDIRECT", "rd", "forward_auth_redirect", "rd"),
    good("FORWARD_AUTH_REDIRECT", "browsers", "forward_auth_redirect", "browsers"),
    good("SMTP_URL", "smtp://relay:s3cret@mail.photos.test:587", "mail_enabled", True, MAIL_FROM=SENDER),
    good("SMTP_URL", "smtps://mail.photos.test", "mail_enabled", True, MAIL_FROM=SENDER),
    good("SMTP_URL", "smtp+plain://127.0.0.1:25", "smtp_url", "smtp+plain://127.0.0.1:25", MAIL_FROM=SENDER),
    good("SMTP_URL", "", "mail_enabled", False, id="SMTP_URL=empty-mail-off"),
    good("MAIL_FROM", "Photos <auth@photos.test>", "mail_from", "Photos <auth@photos.test>", **RELAY),
    good("MAIL_FROM", "auth@photos.test", "mail_from", "auth@photos.test", **RELAY),
    good("SMTP_CA_FILE", str(DEFAULTS_FILE), "smtp_ca_file", DEFAULTS_FILE.resolve(), id="SMTP_CA_FILE=a-file"),
    good("SMTP_TIMEOUT_SECONDS", "1", "smtp_timeout_seconds", 1),
    good("SMTP_TIMEOUT_SECONDS", "120", "smtp_timeout_seconds", 120),
    good("RESET_LINK_MINUTES", "5", "reset_link_minutes", 5),
    good("RESET_LINK_MINUTES", "1440", "reset_link_minutes", 1440),
    good("VERIFY_LINK_HOURS", "1", "verify_link_hours", 1),
    good("VERIFY_LINK_HOURS", "720", "verify_link_hours", 720),
    good("INVITATION_DAYS", "1", "invitation_days", 1),
    good("INVITATION_DAYS", "90", "invitation_days", 90),
    good("MAIL_NOTICES", "none", "mail_notices", ()),
    good("MAIL_NOTICES", "password_changed, key_minted", "mail_notices", ("password_changed", "key_minted")),
]

BAD = [
    bad("ENV", "staging", "must be one of development, production, test"),
    bad("ENV", "Production", "must be one of development, production, test"),
    # Not a folder: start-up should say so in one line, not with a FileExistsError traceback.
    bad("INSTANCE_PATH", "a-file", "cannot be a folder here", id="INSTANCE_PATH=a-file"),
    bad("ISSUER", "ftp://auth.example", "must be an http(s) URL"),
    bad("ISSUER", "https://auth.example/?tenant=1", "must be an http(s) URL"),
    bad("ISSUER", "https://auth.example/#top", "must be an http(s) URL"),
    bad("ISSUER", "https://", "must be an http(s) URL"),
    bad("ISSUER", "auth.example", "must be an http(s) URL"),
    bad("ISSUER", "http://auth.photos.example", "must be https:// in production", **PRODUCTION),
    bad("ISSUER", "http://192.168.1.10:5000", "must be https:// in production", **PRODUCTION),
    bad("DATABASE_URL", "nonsense", "must be a sqlite:/// or postgresql:// URL"),
    bad("DATABASE_URL", "mysql://root:hunter2@db/auth", "must be a sqlite:/// or postgresql:// URL"),
    bad("DATABASE_URL", "oracle://scott:hunter2@db:1521/auth", "must be a sqlite:/// or postgresql:// URL"),
    bad("SECRET_KEY", "short", "must be at least 32 characters"),
    bad("SECRET_KEY", "k" * 31, "must be at least 32 characters", id="SECRET_KEY=31-characters"),
    bad("MASTER_KEY", "c2hvcnQ", "must be 32 bytes"),
    bad("MASTER_KEY", "not base64 at all!", "must be 32 bytes"),
    bad("MASTER_KEY", f"{KEY_A},c2hvcnQ", "must be 32 bytes", id="MASTER_KEY=good,short"),
    bad("MASTER_KEY", " , ", "must hold at least one key"),
    bad("PEPPER", "c2hvcnQ", "must be 32 bytes"),
    bad("PEPPER", KEY_A + KEY_B, "must be 32 bytes", id="PEPPER=64-bytes"),
    bad("REDIS_URL", "http://cache", "must be a redis:// URL"),
    bad("REDIS_URL", "http://default:hunter2@cache:6379", "must be a redis:// URL"),
    bad("TOTP_REQUIRED", "sometimes", "must be one of none, admins, all"),
    bad("TOTP_REQUIRED", "ALL", "must be one of none, admins, all"),
    bad("SECOND_FACTOR_REQUIRED", "sometimes", "AUTHSERVER_SECOND_FACTOR_REQUIRED must be one of none, admins, all"),
    bad("PKCE_REQUIRED", "none", "must be one of public, all"),
    bad("REFRESH_IDLE_SECONDS", "0", "must be between 300 and 1000000000"),
    bad("REFRESH_IDLE_SECONDS", "299", "must be between 300 and 1000000000"),
    bad("REFRESH_IDLE_SECONDS", "a month", "must be a whole number"),
    bad("REFRESH_ABSOLUTE_SECONDS", "299", "must be between 300 and 10000000000"),
    bad("REFRESH_ABSOLUTE_SECONDS", str(10**10 + 1), "must be between 300 and 10000000000"),
    bad("KEEP_REFRESH_ON_PASSWORD_CHANGE", "yes", "must be one of on, off"),
    bad("REQUIRE_PAR", "true", "must be one of on, off"),
    bad("WORKERS", "many", "must be a whole number"),
    bad("WORKERS", "0", "must be between 1 and 64"),
    bad("WORKERS", "65", "must be between 1 and 64"),
    bad("THREADS", "0", "must be between 1 and 64"),
    bad("THREADS", "four", "must be a whole number"),
    bad("THREADS", "2.5", "must be a whole number"),
    bad("FAST_LANE", "maybe", "must be one of on, off"),
    bad("SESSION_IDLE_SECONDS", "59", "must be between 60 and 100000000"),
    bad("SESSION_IDLE_SECONDS", "8h", "must be a whole number"),
    bad("SESSION_ABSOLUTE_SECONDS", str(10**9 + 1), "must be between 60 and 1000000000"),
    bad("ARGON2_TIME_COST", "1", "must be between 2 and 100"),
    bad("ARGON2_MEMORY_KIB", "19455", "must be between 19456 and 4194304"),
    bad("ARGON2_MEMORY_KIB", "lots", "must be a whole number"),
    bad("ARGON2_PARALLELISM", "0", "must be between 1 and 64"),
    bad("PASSWORD_HASHES_AT_ONCE", "0", "must be between 1 and 64"),
    bad("PASSWORD_HASHES_AT_ONCE", "all", "must be a whole number"),
    bad("DATABASE_URL", "sqlite:////nonexistent/folder/a.db", "folder /nonexistent/folder does not exist"),
    bad("KEY_SCOPES", "   ", "must list at least one scope", id="KEY_SCOPES=blank"),
    bad("KEY_HEADERS", " , ", "must list 1 to 10 header names", id="KEY_HEADERS=blank"),
    bad("KEY_HEADERS", "X-API-Key,X Key", "is not a header name", id="KEY_HEADERS=space"),
    bad("KEY_HEADERS", "X-API-Key:evil", "is not a header name", id="KEY_HEADERS=colon"),
    bad("KEY_HEADERS", "Cookie", "carries something else", id="KEY_HEADERS=cookie"),
    bad("KEY_HEADERS", "X-Forwarded-For", "carries something else", id="KEY_HEADERS=forwarded"),
    bad("KEY_HEADERS", ",".join(f"X-K{i}" for i in range(11)), "1 to 10 header names", id="KEY_HEADERS=eleven"),
    bad("KEY_SCOPES", 'profile photos"read', "must be space-separated scope names"),
    bad("KEY_SCOPES", "profile photos\\read", "must be space-separated scope names"),
    bad("LOG_LEVEL", "verbose", 'must be one of DEBUG, INFO, WARNING, ERROR (got "VERBOSE")'),
    bad("METRICS_TOKEN", "short", "must be at least 16 printable ASCII characters without spaces"),
    bad("METRICS_TOKEN", "t" * 15, "must be at least 16", id="METRICS_TOKEN=15-characters"),
    bad("METRICS_TOKEN", "has spaces in the token", "must be at least 16"),
    bad("METRICS_TOKEN", "é" * 16, "must be at least 16", id="METRICS_TOKEN=not-ascii"),
    bad("METRICS_TOKEN", "\x07" * 16, "must be at least 16", id="METRICS_TOKEN=unprintable"),
    bad("METRICS_ADDRESSES", "10.0.0.0/99", "is not a CIDR network"),
    bad("SESSION_COOKIE_DOMAIN", "evil.test", "must be the issuer's host or a parent domain of it", **HTTPS),
    bad("SESSION_COOKIE_DOMAIN", "test", "must be the issuer's host or a parent domain of it", **HTTPS),
    bad("SESSION_COOKIE_DOMAIN", "https://photos.test", "must be the issuer's host or a parent domain", **HTTPS),
    bad("TRUSTED_PROXIES", "everyone", "is not a CIDR network"),
    bad("TRUSTED_PROXIES", "10.0.0.1/8", "is not a CIDR network"),
    bad("FORWARD_AUTH_DOMAINS", "photos.test,https://evil.test", "is not a host name or a .suffix"),
    bad("FORWARD_AUTH_RULES", '[{"policy": "maybe"}]', "rule 1: policy must be one of"),
    bad("FORWARD_AUTH_RULES", "[", "inline JSON is not valid JSON"),
    bad("FORWARD_AUTH_RULES", "/nonexistent/rules.toml", "cannot read /nonexistent/rules.toml"),
    bad("FORWARD_AUTH_DEFAULT_POLICY", "sometimes", "must be one of bypass, one_factor, two_factor, deny"),
    bad("FORWARD_AUTH_REDIRECT", "always", "must be one of rd, browsers"),
    bad("SMTP_URL", "http://relay:hunter2@mail.photos.test", "must be smtp://", MAIL_FROM=SENDER),
    bad("SMTP_URL", "smtp://relay:hunter2@mail.photos.test:99999", "must be smtp://", MAIL_FROM=SENDER,
        id="SMTP_URL=bad-port"),
    bad("SMTP_URL", "smtp://relay:hunter2@mail.photos.test/path?x=1", "must be smtp://", MAIL_FROM=SENDER,
        id="SMTP_URL=path"),
    bad("SMTP_URL", "smtp+plain://relay:hunter2@mail.photos.test", "only to a relay on this host",
        MAIL_FROM=SENDER, id="SMTP_URL=plain-remote"),
    bad("SMTP_URL", "smtp://relay:hunter2@mail.photos.test", "needs AUTHSERVER_MAIL_FROM too",
        id="SMTP_URL=without-MAIL_FROM"),
    bad("MAIL_FROM", "not an address", "must be an address like", **RELAY),
    bad("MAIL_FROM", "a@b.test\r\nBcc: victim@evil.test", "must be an address like", **RELAY,
        id="MAIL_FROM=header-injection"),
    bad("MAIL_FROM", "auth@photos.test", "needs AUTHSERVER_SMTP_URL too", id="MAIL_FROM=without-SMTP_URL"),
    bad("SMTP_CA_FILE", "/nonexistent/ca.pem", "must name a readable PEM file"),
    bad("SMTP_TIMEOUT_SECONDS", "0", "must be between 1 and 120"),
    bad("RESET_LINK_MINUTES", "4", "must be between 5 and 1440"),
    bad("RESET_LINK_MINUTES", "half an hour", "must be a whole number"),
    bad("VERIFY_LINK_HOURS", "721", "must be between 1 and 720"),
    bad("INVITATION_DAYS", "0", "must be between 1 and 90"),
    bad("MAIL_NOTICES", "password_changed,login", "must list some of"),
]


def _names(params) -> set[str]:
    return {param.values[0] for param in params}


def test_every_variable_has_good_and_bad_values_in_the_tables():
    assert _names(GOOD) == VARIABLES - {"INSTANCE_PATH"}  # INSTANCE_PATH: its own test below
    assert _names(BAD) == VARIABLES


def test_every_setting_is_a_documented_variable():
    not_variables = {"extra", "max_body_bytes", "master_key_file"}  # unknown variables; a fixed limit; derived
    spelled = {"master_keys": "MASTER_KEY"}
    names = {spelled.get(f.name, f.name.upper()) for f in dataclasses.fields(Settings) if f.name not in not_variables}
    assert names <= VARIABLES


@pytest.mark.parametrize(("name", "value", "attribute", "expected", "context"), GOOD)
def test_good_value_is_taken(tmp_path, name, value, attribute, expected, context):
    settings = from_env(tmp_path, **context, **{name: value})
    assert VIEWS.get(attribute, lambda v: v)(getattr(settings, attribute)) == expected


@pytest.mark.parametrize(("name", "value", "message", "context"), BAD)
def test_bad_value_is_one_line_naming_the_variable(tmp_path, name, value, message, context):
    if name == "INSTANCE_PATH":
        (tmp_path / value).write_text("not a folder\n")
        value = str(tmp_path / value)
    with pytest.raises(SettingsError) as refused:
        from_env(tmp_path, **context, **{name: value})
    text = str(refused.value)
    assert "\n" not in text and "\r" not in text
    assert text.startswith((f"AUTHSERVER_{name} ", f"AUTHSERVER_{name}:")), text
    assert message in text
    assert "hunter2" not in text  # a password in a bad URL is not echoed
    if name in SECRET_VARIABLES:
        assert value.strip() not in text


def test_the_relay_password_is_never_shown(tmp_path):
    settings = from_env(tmp_path, SMTP_URL="smtp://relay:hunter2@mail.photos.test", MAIL_FROM=SENDER)
    assert "hunter2" not in repr(settings)
    from authserver.settings import check_smtp_url

    address = check_smtp_url(settings.smtp_url)
    assert (address.username, address.password, address.port) == ("relay", "hunter2", 587)
    assert "hunter2" not in repr(address)


def test_defaults_file_and_settings_defaults_agree(tmp_path):
    settings = from_env(tmp_path)
    for f in dataclasses.fields(Settings):
        if f.name in ("password_hashes_at_once", "master_key_file"):  # follow the machine, the folder: own tests
            continue
        if f.default is not dataclasses.MISSING:
            assert getattr(settings, f.name) == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING and f.name != "extra":  # extra: its own test
            assert getattr(settings, f.name) == f.default_factory(), f.name
    assert settings.key_scopes == DEFAULT_KEY_SCOPES
    assert (settings.env, settings.issuer) == ("development", "http://127.0.0.1:5000")


@pytest.mark.parametrize(("cores", "workers", "expected"), [(2, "2", 1), (8, "2", 4), (1, "4", 1), (16, "", 8),
                                                           (None, "2", 1), (4, "many", None)])
def test_password_hashes_at_once_defaults_to_each_workers_share_of_the_cores(tmp_path, monkeypatch, cores, workers,
                                                                               expected):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    if expected is None:  # a bad WORKERS is reported under its own name, not this one's
        with pytest.raises(SettingsError, match="^AUTHSERVER_WORKERS "):
            from_env(tmp_path, WORKERS=workers)
        return
    assert from_env(tmp_path, WORKERS=workers).password_hashes_at_once == expected
    assert from_env(tmp_path, WORKERS=workers, PASSWORD_HASHES_AT_ONCE="3").password_hashes_at_once == 3


def test_an_empty_value_means_the_default(tmp_path):
    settings = from_env(tmp_path, WORKERS="", TOTP_REQUIRED="", ISSUER="", REDIS_URL="")
    assert (settings.workers, settings.totp_required, settings.issuer) == (2, "none", "http://127.0.0.1:5000")
    assert settings.redis_url is None


def test_unknown_variables_are_kept_as_extra_and_others_ignored(tmp_path):
    settings = Settings.from_env({"AUTHSERVER_INSTANCE_PATH": str(tmp_path), "AUTHSERVER_PHOTO_QUOTA": "10",
                                  "WORKERS": "9", "PATH": "/bin"})
    assert settings.extra["PHOTO_QUOTA"] == "10"
    assert "WORKERS" not in settings.extra and "PATH" not in settings.extra
    assert settings.workers == 2


def test_instance_path_is_resolved_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"AUTHSERVER_INSTANCE_PATH": "data/instance"})
    assert settings.instance_path == tmp_path / "data" / "instance"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'instance' / 'authserver.db'}"


def test_forward_auth_rules_from_a_file_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules.json").write_text(json.dumps({"rules": RULES}))
    settings = from_env(tmp_path, FORWARD_AUTH_RULES="rules.json", FORWARD_AUTH_DEFAULT_POLICY="deny")
    assert rules_view(settings.forward_auth_rules) == (2, "deny", "two_factor")
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    with pytest.raises(SettingsError, match=r"^AUTHSERVER_FORWARD_AUTH_RULES: .*must end in \.json or \.toml$"):
        from_env(tmp_path, FORWARD_AUTH_RULES="rules.yaml")


def test_production_without_secrets_stops_and_generates_nothing(tmp_path):
    instance = tmp_path / "instance"
    with pytest.raises(SettingsError) as refused:
        from_env(tmp_path, ENV="production")
    assert str(refused.value) == "AUTHSERVER_SECRET_KEY must be set when AUTHSERVER_ENV=production"
    assert list(instance.iterdir()) == []  # (the test's helper made the folder; production made nothing)

    with pytest.raises(SettingsError) as refused:
        from_env(tmp_path, ENV="production", SECRET_KEY="s" * 40, MASTER_KEY=new_key_text())
    assert "AUTHSERVER_PEPPER must be set" in str(refused.value)
    assert list(instance.iterdir()) == []


def test_production_with_every_secret_given_starts(tmp_path):
    settings = Settings.from_env({
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_ISSUER": "https://auth.photos.example",
        "AUTHSERVER_SECRET_KEY": "s" * 40,
        "AUTHSERVER_MASTER_KEY": f"{new_key_text()},{new_key_text()}",
        "AUTHSERVER_PEPPER": new_key_text(),
        "AUTHSERVER_DATABASE_URL": "postgresql://authserver@db.internal/authserver",
    })
    assert settings.is_production and settings.is_https and len(settings.master_keys) == 2
    assert not (tmp_path / "instance").exists()


def test_production_on_sqlite_in_a_folder_that_does_not_exist_is_one_line(tmp_path):
    # Before: `authserver db upgrade` died with a FileNotFoundError traceback.
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"AUTHSERVER_ENV": "production", "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "missing"),
                           "AUTHSERVER_ISSUER": "https://auth.photos.example", "AUTHSERVER_SECRET_KEY": "s" * 40,
                           "AUTHSERVER_MASTER_KEY": new_key_text(), "AUTHSERVER_PEPPER": new_key_text()})
    assert str(refused.value).startswith(f"AUTHSERVER_INSTANCE_PATH: the SQLite database's folder {tmp_path}/missing "
                                         "does not exist")


def test_development_generates_owner_only_secrets_once_and_reuses_them(tmp_path):
    environ = {"AUTHSERVER_ENV": "development", "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance")}
    first = Settings.from_env(environ)
    files = {name: tmp_path / "instance" / name for name in ("secret_key", "master_key", "pepper")}
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700
    contents = {name: path.read_text() for name, path in files.items()}

    second = Settings.from_env(environ)
    assert (second.secret_key, second.master_keys, second.pepper) == (first.secret_key, first.master_keys, first.pepper)
    assert {name: path.read_text() for name, path in files.items()} == contents
    assert first.database_url == f"sqlite:///{tmp_path / 'instance' / 'authserver.db'}"


def test_a_bad_value_stops_authserver_serve_with_one_line_and_exit_2(tmp_path):
    """The one real start-up: `authserver serve` reports the `SettingsError` as one line on stderr,
    exits 2 and, in production, leaves no instance folder behind. The port is one this test holds, so
    a server that got past its settings would stop on the port instead (another message), never serve."""
    inst = Instance(tmp_path / "instance")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = inst.cli("serve", "--host", "127.0.0.1", "--port", str(port), timeout=30, **PRODUCTION,
                        AUTHSERVER_DATABASE_URL="mysql://root:hunter2@db/auth")
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("authserver: AUTHSERVER_DATABASE_URL ")
    assert "must be a sqlite:/// or postgresql:// URL" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert "hunter2" not in done.stderr  # a password in a bad URL is not echoed
    assert not inst.path.exists()  # production generates nothing, even on the way to refusing
