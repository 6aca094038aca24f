"""Start-up configuration: a bad value stops `authserver serve` with one clear line."""

from __future__ import annotations

import stat

import pytest

from authserver.settings import Settings, SettingsError, new_key_text
from tests.servers import Instance


@pytest.mark.parametrize(
    "name,value,expected",
    [
        ("DATABASE_URL", "nonsense", "must be a sqlite:/// or postgresql:// URL"),
        ("DATABASE_URL", "mysql://root:hunter2@db/auth", "must be a sqlite:/// or postgresql:// URL"),
        ("TOTP_REQUIRED", "sometimes", "must be one of none, admins, all"),
        ("MASTER_KEY", "c2hvcnQ", "must be 32 bytes"),
        ("ISSUER", "ftp://auth.example", "must be an http(s) URL"),
        ("ISSUER", "https://auth.example/?tenant=1", "must be an http(s) URL"),
        ("WORKERS", "many", "must be a whole number"),
        ("WORKERS", "0", "must be between 1 and 64"),
        ("THREADS", "0", "must be between 1 and 64"),
        ("THREADS", "four", "must be a whole number"),
        ("ENV", "staging", "must be one of development, production, test"),
        ("REDIS_URL", "http://cache", "must be a redis:// URL"),
    ],
)
def test_bad_value_stops_serve_with_one_line_naming_the_variable(tmp_path, name, value, expected):
    inst = Instance(tmp_path / "instance")
    done = inst.cli("serve", "--port", "1", **{f"AUTHSERVER_{name}": value})
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"authserver: AUTHSERVER_{name} ") and expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert "hunter2" not in lines[0]  # a password in a bad URL is not echoed


def test_production_without_secrets_stops_and_generates_nothing(tmp_path):
    inst = Instance(tmp_path / "instance")
    done = inst.cli("serve", AUTHSERVER_ENV="production")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "authserver: AUTHSERVER_SECRET_KEY must be set when AUTHSERVER_ENV=production"
    ]
    assert not inst.path.exists()

    inst.path.mkdir()
    done = inst.cli("serve", AUTHSERVER_ENV="production", AUTHSERVER_SECRET_KEY="s" * 40,
                    AUTHSERVER_MASTER_KEY=new_key_text())
    assert done.returncode == 2
    assert "AUTHSERVER_PEPPER must be set" in done.stderr
    assert list(inst.path.iterdir()) == []


def test_production_with_every_secret_given_starts(tmp_path):
    settings = Settings.from_env({
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_ISSUER": "https://auth.photos.example",
        "AUTHSERVER_SECRET_KEY": "s" * 40,
        "AUTHSERVER_MASTER_KEY": f"{new_key_text()},{new_key_text()}",
        "AUTHSERVER_PEPPER": new_key_text(),
    })
    assert settings.is_production and settings.is_https and len(settings.master_keys) == 2
    assert not (tmp_path / "instance").exists()


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


def test_postgresql_urls_use_psycopg_3():
    settings = Settings.from_env({
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_DATABASE_URL": "postgresql://auth:pw@db.internal/auth",
        "AUTHSERVER_SECRET_KEY": "s" * 40,
        "AUTHSERVER_MASTER_KEY": new_key_text(),
        "AUTHSERVER_PEPPER": new_key_text(),
    })
    assert settings.database_url == "postgresql+psycopg://auth:pw@db.internal/auth"


def test_secret_key_too_short_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="AUTHSERVER_SECRET_KEY must be at least 32 characters"):
        Settings.from_env({"AUTHSERVER_INSTANCE_PATH": str(tmp_path), "AUTHSERVER_SECRET_KEY": "short"})


@pytest.mark.parametrize("issuer", ["http://auth.photos.example", "http://192.168.1.10:5000"])
def test_production_refuses_a_plain_http_issuer(tmp_path, issuer):
    with pytest.raises(SettingsError, match="AUTHSERVER_ISSUER must be https:// in production"):
        Settings.from_env({
            "AUTHSERVER_ENV": "production", "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
            "AUTHSERVER_ISSUER": issuer, "AUTHSERVER_SECRET_KEY": "s" * 40,
            "AUTHSERVER_MASTER_KEY": new_key_text(), "AUTHSERVER_PEPPER": new_key_text(),
        })


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:5000", "http://localhost:8000", "http://[::1]:8000"])
def test_production_allows_a_loopback_http_issuer(tmp_path, issuer):
    settings = Settings.from_env({
        "AUTHSERVER_ENV": "production", "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_ISSUER": issuer, "AUTHSERVER_SECRET_KEY": "s" * 40,
        "AUTHSERVER_MASTER_KEY": new_key_text(), "AUTHSERVER_PEPPER": new_key_text(),
    })
    assert settings.issuer == issuer


@pytest.mark.parametrize(("name", "value", "message"), [
    ("AUTHSERVER_METRICS_TOKEN", "short", "AUTHSERVER_METRICS_TOKEN must be at least 16"),
    ("AUTHSERVER_METRICS_TOKEN", "has spaces in the token", "AUTHSERVER_METRICS_TOKEN must be at least 16"),
    ("AUTHSERVER_METRICS_ADDRESSES", "10.0.0.0/99", "AUTHSERVER_METRICS_ADDRESSES"),
    ("AUTHSERVER_TRUSTED_PROXIES", "everyone", "AUTHSERVER_TRUSTED_PROXIES"),
    ("AUTHSERVER_REFRESH_IDLE_SECONDS", "0", "AUTHSERVER_REFRESH_IDLE_SECONDS"),
    ("AUTHSERVER_KEEP_REFRESH_ON_PASSWORD_CHANGE", "yes", "AUTHSERVER_KEEP_REFRESH_ON_PASSWORD_CHANGE"),
])
def test_bad_security_settings_are_refused_naming_the_variable(tmp_path, name, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"), name: value})
