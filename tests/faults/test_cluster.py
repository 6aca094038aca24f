"""Three interchangeable instances on one PostgreSQL and one Redis, behind a real nginx.

The instances are `authserver serve` processes sharing the database, Redis and the same
secrets, with config/examples/nginx-cluster.conf in front (only its ports changed), as
docs/deploy.md describes. A flow whose requests alternate between instances, races across
instances with one winner, a revocation on one seen by the others at once, a rolling
restart under load without a failed request, and an instance killed with SIGKILL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from authserver.settings import new_key_text
from tests.helpers.csrf import csrf_token
from tests.helpers.html import form_action
from tests.helpers.proxies import EXAMPLES, NGINX_WRAPPER, _running, binary, wait_for_port
from tests.helpers.servers import PG_BIN, Instance, PostgresCluster, free_port

pytestmark = [pytest.mark.live, pytest.mark.skipif(not (PG_BIN / "pg_ctl").exists(),
                                                   reason=f"PostgreSQL 15 binaries not found in {PG_BIN}")]

REDIRECT = "https://gallery.example/callback"
PASSWORD = "correct horse battery staple"


class RedisServer:
    """redis-server on a free loopback port, without persistence, to stop and start at will."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> RedisServer:
        self.folder.mkdir(exist_ok=True)
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (the process writes it)
        self.process = subprocess.Popen([binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                                        stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, self.folder / "redis.log")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def unit_command(directive: str) -> list[str]:
    """The `authserver` arguments of a directive of config/examples/authserver.service."""
    lines = (EXAMPLES / "authserver.service").read_text().splitlines()
    [line] = [line for line in lines if line.startswith(directive + "=")]
    program, *arguments = line.split("=", 1)[1].split()
    assert program.endswith("/authserver")
    return arguments


class Cluster:
    def __init__(self, root, database_url: str, redis_url: str):
        self.root = root
        self.proxy_port = free_port()
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        self.ports = [free_port() for _ in range(3)]
        shared = {
            "AUTHSERVER_ENV": "production",
            "AUTHSERVER_ISSUER": self.url,  # loopback http: allowed in production
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_REDIS_URL": redis_url,
            "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(40),
            "AUTHSERVER_PEPPER": new_key_text(),
            "AUTHSERVER_TRUSTED_PROXIES": "127.0.0.1/32",
            "AUTHSERVER_WORKERS": "1",
            "AUTHSERVER_LOG_LEVEL": "WARNING",
        }
        self.instances = [Instance(root / f"instance-{n}", **shared) for n in range(3)]
        # The master keyring as a file each instance reads (on real hosts: one mounted secret).
        self.keyring = new_key_text()
        for instance in self.instances:
            instance.path.mkdir()
        self.share_keyring()
        self.admin = self.instances[0]

    def start(self) -> None:
        # The unit's ExecStart, on each instance's own port (Instance.serve runs `serve --host --port`).
        assert unit_command("ExecStart") == ["serve", "--host", "127.0.0.1", "--port", "8001"]
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda pair: pair[0].serve(port=pair[1]), zip(self.instances, self.ports, strict=True)))

    def share_keyring(self, text: str | None = None) -> None:
        """Give every instance the keyring (after `master-key add`, as a secret store would)."""
        self.keyring = text or self.keyring
        for instance in self.instances:
            path = instance.path / "master_key"
            path.touch(mode=0o600)
            path.write_text(self.keyring + "\n")

    def stop(self) -> None:
        for instance in self.instances:
            instance.stop()

    def cli(self, *args: str) -> dict:
        done = self.admin.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def logs(self) -> str:
        return "\n".join(instance.server_log() for instance in self.instances)


@contextlib.contextmanager
def nginx_in_front(run, ports) -> str:
    """config/examples/nginx-cluster.conf with its listen line and upstream ports changed."""
    nginx = binary("nginx")
    run.mkdir()
    port = free_port()
    site = (EXAMPLES / "nginx-cluster.conf").read_text()
    assert site.count("listen 80;") == 1
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    for example, actual in zip((8001, 8002, 8003), ports, strict=True):
        assert site.count(f"server 127.0.0.1:{example} ") == 1
        site = site.replace(f"server 127.0.0.1:{example} ", f"server 127.0.0.1:{actual} ")
    (run / "site.conf").write_text(site)
    wrapper = NGINX_WRAPPER.replace("    upstream authserver {{ server 127.0.0.1:{app_port}; }}\n", "").replace(
        "    upstream photos {{ server 127.0.0.1:{upstream_port}; }}\n", "")
    (run / "nginx.conf").write_text(wrapper.format(run=run, user="user root;" if os.geteuid() == 0 else ""))
    log = run / "error.log"
    with _running([nginx, "-p", str(run), "-c", str(run / "nginx.conf"), "-e", str(log)], port, log, env=None):
        yield port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    database = PostgresCluster().start()  # of its own: the outage test stops it
    database_url = database.url
    store = RedisServer(root / "redis").start()  # of its own: the Redis test stops it
    group = Cluster(root, database_url, store.url)
    group.redis = store
    with nginx_in_front(root / "nginx", group.ports) as port:
        group.url = f"http://127.0.0.1:{port}"
        for instance in group.instances:  # the issuer is the proxy's address
            instance.env["AUTHSERVER_ISSUER"] = group.url
        upgraded = group.admin.cli(*unit_command("ExecStartPre"))
        assert upgraded.returncode == 0, upgraded.stderr
        group.cli("user", "create", "alice", "--email", "alice@photos.example", "--password", PASSWORD)
        gallery = group.cli("client", "create", "--name", "Gallery", "--redirect-uri", REDIRECT, "--scope",
                            "openid profile email offline_access", "--grant", "authorization_code", "--grant",
                            "refresh_token", "--trusted")
        indexer = group.cli("client", "create", "--name", "Indexer", "--grant", "client_credentials", "--scope",
                            "photos:read", "--introspect")
        group.gallery = (gallery["client_id"], gallery["client_secret"])
        group.indexer = (indexer["client_id"], indexer["client_secret"])
        minted = group.cli("client", "create", "--name", "Minter", "--grant", "client_credentials", "--scope",
                           "photos:read", "--access-token-format", "jwt")
        group.minter = (minted["client_id"], minted["client_secret"])
        group.cli("user", "create", "bob", "--email", "bob@photos.example", "--password", PASSWORD)
        key = group.cli("key", "mint", "--user", "alice", "--name", "uploader", "--scope", "photos:read")
        group.key = f"{key['key_id']}:{key['secret']}"
        group.database = database
        group.start()
        try:
            yield group
        finally:
            group.stop()
            database.destroy()
            store.stop()


def instance_url(cluster, n: int) -> str:
    return f"http://127.0.0.1:{cluster.ports[n % 3]}"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def code_for(cluster, http: requests.Session, challenge: str, *, via: int = 0) -> str:
    """A code for alice (logged in on `http`), asked of instance `via`."""
    params = {"response_type": "code", "client_id": cluster.gallery[0], "redirect_uri": REDIRECT,
              "scope": "openid profile offline_access", "state": "s", "nonce": secrets.token_urlsafe(8),
              "code_challenge": challenge, "code_challenge_method": "S256"}
    response = http.get(instance_url(cluster, via) + "/oauth/authorize", params=params, allow_redirects=False,
                        timeout=10)
    if response.status_code == 200:  # consent (offline_access is asked even of a trusted client)
        response = http.post(instance_url(cluster, via + 1) + form_action(response.text), allow_redirects=False,
                             data={"csrf_token": csrf_token(response.text), "allow": "x"}, timeout=10)
    assert response.status_code in (302, 303), response.text
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


def logged_in(cluster, via: int = 0) -> requests.Session:
    http = requests.Session()
    response = http.post(instance_url(cluster, via) + "/api/session/login", timeout=10,
                         json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return http


def redeem(cluster, code: str, verifier: str, *, via: int) -> requests.Response:
    return requests.post(instance_url(cluster, via) + "/oauth/token", auth=cluster.gallery, timeout=10,
                         data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier})


def refresh(cluster, token: str, *, via: int) -> requests.Response:
    return requests.post(instance_url(cluster, via) + "/oauth/token", auth=cluster.gallery, timeout=10,
                         data={"grant_type": "refresh_token", "refresh_token": token})


@contextlib.contextmanager
def under_load(*senders: Callable[[], requests.Response], pause: float = 0.0) -> Iterator[list]:
    """Each sender in a thread of its own, again and again until the block ends; yields the
    answers as they come (a Response, or the name of the exception that stood for one)."""
    stop = threading.Event()
    answers: list = []

    def run(send) -> None:
        while not stop.is_set():
            try:
                answers.append(send())
            except requests.RequestException as exc:
                answers.append(type(exc).__name__)
            time.sleep(pause)

    threads = [threading.Thread(target=run, args=(send,)) for send in senders]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)


def status_of(answer) -> int | str:
    return answer.status_code if isinstance(answer, requests.Response) else answer


def failures(answers: list) -> list:
    return [status_of(a) for a in answers if status_of(a) != 200]


def tokens_for(cluster, auth, session=requests):
    """A sender: a client_credentials token through the proxy."""
    return lambda: session.post(cluster.url + "/oauth/token", auth=auth, timeout=10,
                                data={"grant_type": "client_credentials"})


def whoami(cluster, session=requests):
    """A sender: GET /api/me with the API key, through the proxy."""
    return lambda: session.get(cluster.url + "/api/me", headers={"X-API-Key": cluster.key}, timeout=10)


def test_a_login_code_and_refresh_flow_alternating_between_instances(cluster):
    http = logged_in(cluster, via=0)  # the session made on one instance is known to the others
    assert http.get(instance_url(cluster, 1) + "/api/me", timeout=10).json()["username"] == "alice"
    verifier, challenge = pkce()
    code = code_for(cluster, http, challenge, via=1)  # authorize on 1, consent on 2
    tokens = redeem(cluster, code, verifier, via=0)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    userinfo = requests.get(instance_url(cluster, 1) + "/oauth/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200 and userinfo.json()["preferred_username"] == "alice"
    refreshed = refresh(cluster, body["refresh_token"], via=2)
    assert refreshed.status_code == 200, refreshed.text
    jwks = requests.get(instance_url(cluster, 0) + "/oauth/jwks", timeout=10).json()
    assert {k["kid"] for k in jwks["keys"]} == {
        k["kid"] for k in requests.get(instance_url(cluster, 2) + "/oauth/jwks", timeout=10).json()["keys"]}
    # The same answers through the proxy, whichever instance it picks.
    through = requests.get(cluster.url + "/.well-known/openid-configuration", timeout=10).json()
    assert through["issuer"] == cluster.url


def test_one_code_and_one_refresh_token_raced_across_instances_have_one_winner(cluster):
    http = logged_in(cluster)
    verifier, challenge = pkce()
    code = code_for(cluster, http, challenge)
    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(lambda n: redeem(cluster, code, verifier, via=n), range(9)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 8
    winner = next(a.json() for a in answers if a.status_code == 200)
    # The replays revoked what the winner got (a code is single-use, RFC 6749 §4.1.2).
    assert refresh(cluster, winner["refresh_token"], via=1).status_code == 400

    verifier, challenge = pkce()
    fresh = redeem(cluster, code_for(cluster, http, challenge), verifier, via=2).json()
    with ThreadPoolExecutor(9) as pool:
        rotations = list(pool.map(lambda n: refresh(cluster, fresh["refresh_token"], via=n), range(9)))
    assert sorted(r.status_code for r in rotations) == [200] + [400] * 8


def test_a_revocation_on_one_instance_is_seen_by_the_others_at_once(cluster):
    headers = {"X-API-Key": cluster.key}
    assert all(requests.get(instance_url(cluster, n) + "/api/me", headers=headers, timeout=10).status_code == 200
               for n in range(3))
    token = requests.post(instance_url(cluster, 0) + "/oauth/token", auth=cluster.indexer, timeout=10,
                          data={"grant_type": "client_credentials"}).json()["access_token"]
    revoked = requests.post(instance_url(cluster, 1) + "/oauth/revoke", auth=cluster.indexer, timeout=10,
                            data={"token": token})
    assert revoked.status_code == 200
    for n in (0, 2):
        seen = requests.post(instance_url(cluster, n) + "/oauth/introspect", auth=cluster.indexer, timeout=10,
                             data={"token": token})
        assert seen.json() == {"active": False}
    # A key revoked (here with the command line, on no instance at all): refused by every instance at once.
    spare = cluster.cli("key", "mint", "--user", "alice", "--name", "spare", "--scope", "photos:read")
    spare_headers = {"X-API-Key": f"{spare['key_id']}:{spare['secret']}"}
    assert all(requests.get(instance_url(cluster, n) + "/api/me", headers=spare_headers, timeout=10).status_code
               == 200 for n in range(3))
    cluster.cli("key", "revoke", spare["key_id"])
    assert [requests.get(instance_url(cluster, n) + "/api/me", headers=spare_headers, timeout=10).status_code
            for n in range(3)] == [401, 401, 401]


def test_a_rolling_restart_under_load_fails_no_request(cluster):
    senders = [tokens_for(cluster, cluster.indexer, requests.Session()), whoami(cluster, requests.Session())] * 2
    with under_load(*senders) as answers:
        time.sleep(1)
        for instance, port in zip(cluster.instances, cluster.ports, strict=True):
            instance.stop()  # SIGTERM: in-flight requests finish; the port refuses new connections
            assert instance.process.returncode == 0, instance.server_log()[-2000:]
            instance.serve(port=port)
            time.sleep(0.5)
        time.sleep(1)
    failed = failures(answers)
    assert len(answers) > 100 and failed == [], f"{len(failed)} of {len(answers)} failed: {failed[:10]}"


def test_an_instance_killed_outright_leaves_the_others_serving(cluster):
    # Mid-exchange: the code was issued by the instance that dies; another redeems it.
    http = logged_in(cluster, via=2)
    verifier, challenge = pkce()
    code = code_for(cluster, http, challenge, via=2)
    victim = cluster.instances[2]
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    try:
        tokens = redeem(cluster, code, verifier, via=0)
        assert tokens.status_code == 200, tokens.text
        assert refresh(cluster, tokens.json()["refresh_token"], via=1).status_code == 200
        answers = [requests.get(cluster.url + "/api/me", headers={"X-API-Key": cluster.key}, timeout=10).status_code
                   for _ in range(12)]
        tokens = [requests.post(cluster.url + "/oauth/token", auth=cluster.indexer, timeout=10,
                                data={"grant_type": "client_credentials"}).status_code for _ in range(6)]
        assert answers == [200] * 12 and tokens == [200] * 6
    finally:
        victim.serve(port=cluster.ports[2])
    assert requests.get(instance_url(cluster, 2) + "/readyz", timeout=10).json()["status"] == "ok"


def test_the_deployment_guide_shows_the_tested_configuration():
    guide = (EXAMPLES.parent.parent / "docs" / "deploy.md").read_text()
    for example, fence in (("nginx-cluster.conf", "nginx"), ("authserver.service", "ini")):
        shown = guide.split(f"```{fence}\n", 1)[1].split("```", 1)[0]
        assert shown == (EXAMPLES / example).read_text(), f"docs/deploy.md shows another {example}"


def test_master_and_signing_keys_rotate_under_load_without_a_failed_request(cluster):
    """Every instance follows both rotations while serving: no 5xx, and a relying party whose
    JWKS was cached before the signing-key rotation verifies every token signed meanwhile."""
    relying_party = KeySet.import_key_set(requests.get(cluster.url + "/oauth/jwks", timeout=10).json())
    bob = requests.Session()
    assert bob.post(cluster.url + "/api/session/login", json={"username": "bob", "password": PASSWORD},
                    timeout=10).status_code == 200

    def enrol():  # seals a pending TOTP secret on whichever instance nginx picks
        return bob.post(cluster.url + "/api/me/totp", json={}, timeout=10)

    with under_load(enrol, tokens_for(cluster, cluster.minter), whoami(cluster)) as answers:
        time.sleep(1)
        added = cluster.cli("master-key", "add")
        cluster.share_keyring((cluster.admin.path / "master_key").read_text().strip())
        time.sleep(0.5)
        rotated = cluster.cli("master-key", "rotate", "--to", added["key_id"])
        assert rotated["resealed"]["signing_keys"] >= 1
        signing = cluster.cli("signing-key", "rotate")  # published now, signs in 70 s
        time.sleep(2)
    failed = failures(answers)
    assert len(answers) > 50 and failed == [], f"{len(failed)} of {len(answers)} failed: {failed[:10]}"
    minted = [a.json()["access_token"] for a in answers if a.request.url.endswith("/oauth/token")]
    assert minted
    for token in minted:
        jwt.decode(token, relying_party)  # raises if signed by a key the cached set lacks
    assert signing["keys"][0]["kid"] in {k["kid"] for k in requests.get(cluster.url + "/oauth/jwks",
                                                                           timeout=10).json()["keys"]}
    check = cluster.admin.cli("master-key", "check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert all(set(kind["by_key"]) <= {added["key_id"]} for kind in report["kinds"].values()), report
    assert all(requests.get(instance_url(cluster, n) + "/readyz", timeout=10).status_code == 200 for n in range(3))


@pytest.mark.parametrize("step", [90, -90], ids=["ahead", "behind"])
def test_one_instance_with_its_clock_stepped_90_seconds(cluster, step):
    """Its answers stay sane: no 5xx; a TOTP code its clock does not expect is refused (never
    accepted twice across instances); a token it issues keeps its lifetime, off by the step
    at most; a code it cannot vouch for is invalid_grant, not an error."""
    libfaketime = pytest.importorskip("libfaketime")
    _, preload = libfaketime.get_reload_information()
    skewed = cluster.instances[2]
    saved = dict(skewed.env)
    skewed.stop()
    skewed.env.update(preload, FAKETIME=f"{step:+d}s")
    skewed.serve(port=cluster.ports[2])
    try:
        served_at = requests.get(instance_url(cluster, 2) + "/healthz", timeout=10).headers["Date"]
        offset = parsedate_to_datetime(served_at).timestamp() - time.time()
        assert abs(offset - step) < 5, f"the instance's clock is {offset:+.0f} s off, not {step:+d} s"

        # TOTP: the user's authenticator keeps real time.
        device = enrol_totp_user(cluster, f"carol{step + 100}")
        code = device.now()
        login = {"username": f"carol{step + 100}", "password": PASSWORD, "totp_code": code}
        on_skewed = requests.post(instance_url(cluster, 2) + "/api/session/login", json=login, timeout=10)
        assert on_skewed.status_code == 401 and on_skewed.json()["error"] == "invalid_totp"
        assert requests.post(instance_url(cluster, 0) + "/api/session/login", json=login,
                             timeout=10).status_code == 200
        assert requests.post(instance_url(cluster, 1) + "/api/session/login", json=login,
                             timeout=10).status_code == 401  # spent, on every instance

        # Tokens the stepped instance issues: the lifetime holds, off by the step at most.
        issued = requests.post(instance_url(cluster, 2) + "/oauth/token", auth=cluster.indexer, timeout=10,
                               data={"grant_type": "client_credentials"})
        assert issued.status_code == 200
        seen = requests.post(instance_url(cluster, 0) + "/oauth/introspect", auth=cluster.indexer, timeout=10,
                             data={"token": issued.json()["access_token"]}).json()
        assert seen["active"] is True and seen["exp"] - seen["iat"] == issued.json()["expires_in"]
        assert abs(seen["exp"] - (time.time() + issued.json()["expires_in"]) - step) < 10

        # Codes live 60 s, less than the step: redeemed across the step, they are refused cleanly.
        http = logged_in(cluster)
        for made, redeemed in ((0, 2), (2, 0)):
            verifier, challenge = pkce()
            code = code_for(cluster, http, challenge, via=made)
            answer = redeem(cluster, code, verifier, via=redeemed)
            assert answer.status_code in (200, 400), answer.text
            if answer.status_code == 400:
                assert answer.json()["error"] == "invalid_grant"
    finally:
        skewed.stop()
        skewed.env.clear()
        skewed.env.update(saved)
        skewed.serve(port=cluster.ports[2])


def enrol_totp_user(cluster, username: str) -> pyotp.TOTP:
    """A user with TOTP, enrolled through the JSON API (on instance 0) with a real-time authenticator."""
    cluster.cli("user", "create", username, "--email", f"{username}@photos.example", "--password", PASSWORD)
    http = requests.Session()
    base = instance_url(cluster, 0)
    assert http.post(base + "/api/session/login", json={"username": username, "password": PASSWORD},
                     timeout=10).status_code == 200
    secret = http.post(base + "/api/me/totp", json={}, timeout=10).json()["secret"]
    device = pyotp.TOTP(secret)
    confirmed = http.post(base + "/api/me/totp/confirm", json={"code": device.now()}, timeout=10)
    assert confirmed.status_code == 200, confirmed.text
    time.sleep(30 - time.time() % 30 + 0.5)  # the next step: the confirming code is spent
    return device


def test_postgresql_stopped_under_load_is_503_then_recovers_without_a_restart(cluster):
    """Fail closed while the database is gone (503 with Retry-After, never a 500 or a token
    that was not stored), and every instance serves again within seconds of its return."""
    with under_load(*[tokens_for(cluster, cluster.indexer), whoami(cluster)] * 2, pause=0.02) as answers:
        time.sleep(1)
        cluster.database.stop()
        time.sleep(3)
        during = list(answers)
        cluster.database.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(requests.get(instance_url(cluster, n) + "/readyz", timeout=10).status_code == 200
                   for n in range(3)):
                break
            time.sleep(0.2)
        recovered_at = len(answers)
        time.sleep(1)
    statuses = {status_of(a) for a in answers}
    assert statuses <= {200, 503}, statuses
    assert any(a.status_code == 503 and a.headers["Retry-After"] == "5" for a in during), "the outage was not seen"
    assert failures(answers[recovered_at:]) == []
    issued = [a.json()["access_token"] for a in answers if a.request.url.endswith("/oauth/token")
              and a.status_code == 200]
    assert issued
    for token in issued:  # every token answered 200 was stored
        seen = requests.post(cluster.url + "/oauth/introspect", auth=cluster.indexer, timeout=10,
                             data={"token": token})
        assert seen.json()["active"] is True


def test_behind_the_proxy_slow_request_bodies_hold_no_instance(cluster):
    """Granian has no timeout for a request body (upstream will not add one), so a client that
    announces a body and sends it slowly holds a worker thread; a handful freeze an instance
    that faces clients directly (found by the black-box review). nginx, as configured in
    docs/deploy.md, buffers each body before it passes the request on: forty such clients
    hold none of the instances' threads."""
    stalled = []
    try:
        for _ in range(40):
            connection = socket.create_connection(("127.0.0.1", int(cluster.url.rsplit(":", 1)[1])), timeout=10)
            connection.sendall(b"POST /oauth/token HTTP/1.1\\r\\nHost: auth\\r\\nContent-Type: "
                               b"application/x-www-form-urlencoded\\r\\nContent-Length: 100\\r\\n\\r\\nab")
            stalled.append(connection)
        time.sleep(1)
        for n in range(3):
            started = time.monotonic()
            assert requests.get(instance_url(cluster, n) + "/healthz", timeout=5).status_code == 200
            assert time.monotonic() - started < 2
        answer = requests.post(cluster.url + "/oauth/token", auth=cluster.indexer, timeout=5,
                               data={"grant_type": "client_credentials"})
        assert answer.status_code == 200
    finally:
        for connection in stalled:
            connection.close()


def test_redis_stopped_fails_credential_checks_closed_and_nothing_else(cluster):
    """Without the shared rate-limit store no credential is checked unthrottled (503 with
    Retry-After); what checks none keeps working; everything recovers when it is back."""
    http = logged_in(cluster)  # a session made while Redis runs
    cluster.redis.stop()
    try:
        for n in range(3):
            base = instance_url(cluster, n)
            login = requests.post(base + "/api/session/login", json={"username": "alice", "password": PASSWORD},
                                  timeout=10)
            assert login.status_code == 503 and login.headers["Retry-After"] == "5", login.text
            assert login.json()["error"] == "temporarily_unavailable"
            token = requests.post(base + "/oauth/token", auth=cluster.indexer, timeout=10,
                                  data={"grant_type": "client_credentials"})
            # A client secret is high-entropy: its failures are counted, its successes pass untouched.
            assert token.status_code == 200, token.text
            wrong = requests.post(base + "/oauth/token", auth=(cluster.indexer[0], "not-the-secret"), timeout=10,
                                  data={"grant_type": "client_credentials"})
            assert wrong.status_code == 503, wrong.text  # a failure that cannot be counted is refused
            assert requests.get(base + "/oauth/jwks", timeout=10).status_code == 200
            assert requests.get(base + "/.well-known/openid-configuration", timeout=10).status_code == 200
            assert http.get(base + "/api/me", timeout=10).status_code == 200  # the session needs no throttle
            assert requests.get(base + "/readyz", timeout=10).status_code == 200
    finally:
        cluster.redis.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = requests.post(cluster.url + "/api/session/login", json={"username": "alice", "password": PASSWORD},
                               timeout=10)
        if answer.status_code == 200:
            break
        time.sleep(0.2)
    assert answer.status_code == 200
