"""`authserver serve` as an operator runs it: Granian workers, then the development server."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers.csrf import csrf_token
from tests.helpers.servers import Instance

pytestmark = pytest.mark.live


def metric(text: str, name: str, **labels: str) -> float:
    """One sample from a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if not sample.startswith(name + "{"):
            continue
        have = ",".join(sorted(sample[len(name) + 1:-1].split(",")))
        if have == wanted:
            return float(value)
    return 0.0


@pytest.fixture
def instance(tmp_path):
    inst = Instance(tmp_path / "instance", AUTHSERVER_WORKERS="2", AUTHSERVER_LOG_LEVEL="INFO")
    yield inst
    inst.stop()


def seed_admin(inst: Instance) -> str:
    assert inst.cli("db", "upgrade").returncode == 0
    seeded = inst.cli("seed")
    assert seeded.returncode == 0, seeded.stderr
    return re.search(r"admin password : (\S+)", seeded.stdout).group(1)


def test_serve_runs_granian_and_the_seeded_admin_logs_in(instance):
    password = seed_admin(instance)
    instance.serve()
    base = instance.url
    assert requests.get(base + "/readyz").json() == {"status": "ok", "database": "ok"}
    assert requests.get(base).headers["Server"] == "granian"

    browser = requests.Session()
    page = browser.get(base + "/login?next=/account")
    assert page.status_code == 200
    form = {"username": "admin", "password": password, "csrf_token": csrf_token(page.text), "next": "/account"}
    signed_in = browser.post(base + "/login", data=form, allow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/account"
    me = browser.get(base + "/api/me")
    assert me.status_code == 200
    assert me.json()["username"] == "admin" and me.json()["is_admin"] is True
    assert me.json()["auth_method"] == "password"

    app = requests.Session()
    assert app.post(base + "/api/session/login", json={"username": "admin", "password": "not it"}).status_code == 401
    logged_in = app.post(base + "/api/session/login", json={"username": "admin", "password": password})
    assert logged_in.status_code == 200
    assert app.get(base + "/api/me").json()["username"] == "admin"

    log = instance.server_log()
    assert password not in log
    lines = [line for line in log.splitlines() if '"authserver.access"' in line]
    assert lines and all('"request_id"' in line for line in lines)


def test_serve_keeps_connections_alive(instance):
    """Proxies and clients reuse connections: three requests, one TCP connection, three answers."""
    seed_admin(instance)
    instance.serve()
    address = urlsplit(instance.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        received = b""
        for answered in range(1, 4):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: authserver.test\r\n\r\n")
            while received.count(b'"status":"ok"') < answered:
                chunk = conn.recv(65536)
                assert chunk, f"the server closed the connection after {answered - 1} answers"
                received += chunk
    assert received.count(b"HTTP/1.1 200") == 3 and b"connection: close" not in received.lower()


def test_metrics_add_up_across_workers(instance):
    password = seed_admin(instance)
    instance.serve()
    base = instance.url

    def log_in(attempt: int) -> int:
        # The failures name others, one each: six wrong passwords for one account from one address
        # would, rightly, make the throttle refuse the next tries (docs/security.md).
        if attempt % 2:
            body = {"username": "admin", "password": password}
        else:
            body = {"username": f"nobody{attempt}", "password": "wrong"}
        return requests.post(base + "/api/session/login", json=body).status_code

    # Password hashing keeps a worker busy, so concurrent logins spread over both workers.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(log_in, range(12)))
    assert statuses == [200] * 6 + [401] * 6
    per_process = {p.name for p in (instance.path / "prometheus").glob("counter_*.db")}
    assert len(per_process) == 2, per_process

    # Each worker counts only what it served; every read, whichever worker answers, sees the sum.
    for _ in range(6):
        text = requests.get(base + "/metrics").text
        assert metric(text, "authserver_logins_total", method="password", outcome="success") == 6
        assert metric(text, "authserver_logins_total", method="password", outcome="failure") == 6
        assert metric(text, "authserver_http_requests_total",
                      endpoint="/api/session/login", method="POST", status="401") == 6
        assert metric(text, "authserver_http_request_seconds_count", endpoint="/api/session/login") == 12


def test_serve_dev_runs_the_reloading_development_server(instance):
    seed_admin(instance)
    instance.serve("--dev")
    health = requests.get(instance.url + "/healthz")
    assert health.headers["Server"].startswith("Werkzeug"), instance.server_log()
    response = requests.get(instance.url + "/api/me")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized", instance.server_log()
    assert "Restarting with" in instance.server_log()  # the reloader is watching the source


def test_serve_refuses_a_port_another_server_listens_on(tmp_path):
    """On 50170db a second `serve` on a busy port started silently and both listened (SO_REUSEPORT)."""
    first = Instance(tmp_path / "first", AUTHSERVER_WORKERS="1")
    assert first.cli("db", "upgrade").returncode == 0
    first.serve()
    try:
        port = urlsplit(first.url).port
        second = Instance(tmp_path / "second", AUTHSERVER_WORKERS="1")
        for extra in ((), ("--dev",)):
            refused = second.cli("serve", "--host", "127.0.0.1", "--port", str(port), *extra, timeout=60)
            assert refused.returncode == 2, refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert lines == [f"authserver: port {port} on 127.0.0.1 is already in use (is another server running?); "
                             "stop it or choose another --port"]
        assert requests.get(first.url + "/healthz", timeout=10).status_code == 200
    finally:
        first.stop()


def test_forward_auth_sends_non_ascii_names_as_utf8_under_granian(instance):
    """Granian writes a WSGI header string as UTF-8, where PEP 3333 servers write latin-1: the
    Remote-* headers must reach the proxy as the UTF-8 bytes of the name either way, never
    encoded twice (`jöe` must not arrive as the bytes of another user's `jÃ¶e`)."""
    seed_admin(instance)
    made = instance.cli("user", "create", "jöe", "--email", "joe@photos.example", "--name", "李 Jöe",
                        "--password", "a-long-enough-password", "--json")
    assert made.returncode == 0, made.stderr
    minted = instance.cli("key", "mint", "--user", "jöe", "--name", "proxy test", "--json")
    assert minted.returncode == 0, minted.stderr
    key = json.loads(minted.stdout)
    instance.serve()
    answer = requests.get(instance.url + "/api/authz/forward-auth",
                          headers={"X-API-Key": f"{key['key_id']}:{key['secret']}",
                                   "X-Original-URL": "https://photos.example/"})
    assert answer.status_code == 200, instance.server_log()
    # http.client hands header values over as latin-1 text: back to the bytes on the wire.
    wire = {name: answer.headers[name].encode("latin-1") for name in ("Remote-User", "Remote-Name")}
    assert wire == {"Remote-User": "jöe".encode(), "Remote-Name": "李 Jöe".encode()}


def test_without_an_issuer_set_the_server_is_its_own_issuer_and_says_so(instance, tmp_path):
    # Before: `serve --port N` ran with the default issuer http://127.0.0.1:5000, so every
    # discovery document, redirect and token named a server that was not there.
    seed_admin(instance)
    instance.serve()
    discovery = requests.get(instance.url + "/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == instance.url
    assert discovery["token_endpoint"] == instance.url + "/oauth/token"
    assert f"issuer {instance.url} (AUTHSERVER_ISSUER is not set" in instance.server_log()
    instance.stop()

    given = Instance(tmp_path / "given", AUTHSERVER_ISSUER="https://auth.photos.example")
    assert given.cli("db", "upgrade").returncode == 0
    try:
        given.serve()
        issuer = requests.get(given.url + "/.well-known/openid-configuration", timeout=10).json()["issuer"]
        assert issuer == "https://auth.photos.example"
        assert "issuer https://auth.photos.example (AUTHSERVER_ISSUER)" in given.server_log()
    finally:
        given.stop()


def test_production_behind_https_without_trusted_proxies_is_warned_about(tmp_path):
    secrets_env = {"AUTHSERVER_ENV": "production", "AUTHSERVER_ISSUER": "https://auth.photos.example",
                   "AUTHSERVER_SECRET_KEY": "s" * 40, "AUTHSERVER_MASTER_KEY": "A" * 43, "AUTHSERVER_PEPPER": "B" * 43}
    bare = Instance(tmp_path / "bare", **secrets_env)
    bare.path.mkdir()
    assert bare.cli("db", "upgrade").returncode == 0
    try:
        bare.serve()
        assert "warning: AUTHSERVER_TRUSTED_PROXIES is empty" in bare.server_log()
    finally:
        bare.stop()
    proxied = Instance(tmp_path / "proxied", AUTHSERVER_TRUSTED_PROXIES="127.0.0.1/32", **secrets_env)
    proxied.path.mkdir()
    assert proxied.cli("db", "upgrade").returncode == 0
    try:
        proxied.serve()
        assert "AUTHSERVER_TRUSTED_PROXIES is empty" not in proxied.server_log()
    finally:
        proxied.stop()


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                              ("0.0.0.0", True), ("192.0.2.10", True)])
def test_serving_clients_directly_is_warned_about(host, warned, capsys):
    from authserver.cli import warn_if_facing_clients

    warn_if_facing_clients(host)
    assert ("put a reverse proxy that buffers request bodies" in capsys.readouterr().err) is warned
