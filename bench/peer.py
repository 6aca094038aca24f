"""The Node peer (panva/oidc-provider, ../shared/peer/oidc-provider) served for a side-by-side race.

`NodePeer.start()` copies the peer to a temporary folder, installs it with
`npm ci --silent`, and runs `node server.mjs` with NODE_ENV=production on a free
loopback port: one confidential client (bench-client / bench-secret,
client_secret_basic), opaque tokens, its in-memory store, one Node process.
`NodePeer` offers what `http_load.load()` needs of a served instance (base URL,
work folder, process ids, a checked request), so the peer is driven by the same
wrk settings and measured the same way as the project.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from http_load import ROOT, Scenario, check, children, free_port, stop_group

PEER_DIR = ROOT.parent / "shared" / "peer" / "oidc-provider"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"  # the peer's fixed, published bench credentials
SCOPE = "api:read"
TOKEN_SCENARIO = "POST /token (client_credentials)"
INTROSPECTION_SCENARIO = "POST /token/introspection"
# The peer reads these; the caller's shell may export them for other purposes (its README).
PEER_VARIABLES = ("CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URI", "HOST", "PORT", "FIXED_ACCOUNT")


class PeerUnavailable(Exception):
    """The peer cannot run here (no copy of it, no node or npm, or its install failed)."""


@dataclass
class NodePeer:
    source: Path = PEER_DIR
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="authserver-peer-")))
    process: subprocess.Popen | None = None
    base: str = ""
    database_url: str = ""  # `load()` measures a database's processes only when there is one
    backend: str = "node peer"
    basic: str = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()

    def start(self) -> None:
        """Copy, install and serve the peer; PeerUnavailable (with the reason) when it cannot run."""
        if not (self.source / "server.mjs").is_file():
            raise PeerUnavailable(f"no peer at {self.source}")
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                raise PeerUnavailable(f"{tool} is not installed")
        app = self.workdir / "peer"
        shutil.copytree(self.source, app, ignore=shutil.ignore_patterns("node_modules"))
        for folder, _, files in os.walk(app):  # the shared copy is read-only; npm writes beside it
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        try:
            done = subprocess.run(["npm", "ci", "--silent"], cwd=app, capture_output=True, text=True, timeout=600,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise PeerUnavailable("npm ci did not finish within 10 minutes") from None
        if done.returncode != 0:
            detail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise PeerUnavailable(
                f"npm ci --silent failed (exit {done.returncode})" + (f": {detail}" if detail else ""))
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in PEER_VARIABLES}
        env.update(NODE_ENV="production", HOST="127.0.0.1", PORT=str(port))
        with open(self.workdir / "peer.log", "wb") as log:
            self.process = subprocess.Popen(["node", "server.mjs"], cwd=app, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "peer.log").read_text(errors="replace")[-1000:]
                raise PeerUnavailable(f"node server.mjs exited: {log}")
            try:
                if requests.get(self.base + "/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise PeerUnavailable("the peer did not answer within 60 s")

    def token_scenario(self) -> Scenario:
        return Scenario(TOKEN_SCENARIO, "/token", "POST", self._headers(),
                        f"grant_type=client_credentials&scope={SCOPE.replace(':', '%3A')}")

    def introspection_scenario(self) -> Scenario:
        """Introspection of a token issued now: the peer's in-memory store keeps its last 1,000
        entries, so a token from before the token scenario would be gone."""
        response = requests.post(self.base + "/token", data={"grant_type": "client_credentials", "scope": SCOPE},
                                 headers={"Authorization": self.basic}, timeout=10)
        response.raise_for_status()
        return Scenario(INTROSPECTION_SCENARIO, "/token/introspection", "POST", self._headers(),
                        f"token={response.json()['access_token']}")

    def _headers(self) -> tuple[tuple[str, str], ...]:
        return (("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", self.basic))

    def check(self, scenario: Scenario) -> None:
        check(self.base, scenario)

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        stop_group(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)
