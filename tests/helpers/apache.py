"""Apache httpd with mod_auth_openidc for the integration tests: config/examples/apache-openidc.conf
with only its Define values set, inside a VirtualHost on a free loopback port, its run files in a
folder of its own, in the foreground; the stand-in gallery page and API are made here too."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.helpers.proxies import EXAMPLES, EchoHandler, EchoUpstream, read, stop, wait_for_port

SITE = EXAMPLES / "apache-openidc.conf"
APACHE = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")
# What the site file needs (auth_openidc, alias, proxy_http), what the stand-in gallery page needs
# (include, dir, mime), and what every Apache needs (an MPM, authn/authz core, valid-user).
LOADED = ("mpm_event", "authn_core", "authz_core", "authz_user", "alias", "dir", "mime", "include", "proxy",
          "proxy_http", "auth_openidc")

WRAPPER = """\
ServerRoot {run}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {run}/apache2.pid
ErrorLog {run}/error.log
LogLevel warn
DefaultRuntimeDir {run}
{user}
{modules}
TypesConfig /etc/mime.types

<VirtualHost 127.0.0.1:{port}>
    DocumentRoot {www}
    Include {run}/site.conf

    # The stand-in gallery: a page that shows what an app in this Apache (PHP, CGI) is given.
    <Directory {photos}>
        Options +Includes
        AddOutputFilter INCLUDES .shtml
        DirectoryIndex index.shtml
    </Directory>
</VirtualHost>
"""

# The gallery's page: the variables mod_auth_openidc sets, as a PHP gallery reads them from $_SERVER.
GALLERY_PAGE = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Photos</title></head>
<body>
<h1>Photos of <span id="user"><!--#echo var="REMOTE_USER" --></span></h1>
<dl>
<dt>preferred_username</dt><dd id="preferred_username"><!--#echo var="OIDC_CLAIM_preferred_username" --></dd>
<dt>email</dt><dd id="email"><!--#echo var="OIDC_CLAIM_email" --></dd>
<dt>groups</dt><dd id="groups"><!--#echo var="OIDC_CLAIM_groups" --></dd>
<dt>amr</dt><dd id="amr"><!--#echo var="OIDC_CLAIM_amr" --></dd>
<dt>sid</dt><dd id="sid"><!--#echo var="OIDC_CLAIM_sid" --></dd>
<dt>auth</dt><dd id="auth-type"><!--#echo var="AUTH_TYPE" --></dd>
</dl>
<p>{photos}</p>
<p><a id="sign-out" href="{sign_out}">Sign out</a></p>
</body></html>
"""

SIGNED_OUT_PAGE = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>
<body><h1 id="signed-out">You have signed out of the photo site.</h1></body></html>
"""


class ApiHandler(EchoHandler):
    """The photo service's API behind Apache: answers with what Apache told it about the caller."""

    shown = ("oidc_", "oidc-", "x-remote-user")


@dataclass
class RunningApache:
    url: str
    log: Path

    def error_log(self) -> str:
        return read(self.log)


def installed() -> None:
    """Skip, saying what to install, unless apache2 and mod_auth_openidc are here."""
    if not APACHE.exists():
        pytest.skip("apache2 is not installed (apt-get install apache2; .ci/run does)")
    if not (MODULES / "mod_auth_openidc.so").exists():
        pytest.skip("mod_auth_openidc is not installed (apt-get install libapache2-mod-auth-openidc; .ci/run does)")


def site_file(values: dict[str, str], *, without: tuple[str, ...] = ()) -> str:
    """The shipped site file with each Define's value replaced (each one given, exactly once), and
    the lines in `without` left out (a test showing what they are for)."""
    text = SITE.read_text()
    defined = re.findall(r"^Define (\w+) ", text, flags=re.M)
    assert sorted(defined) == sorted(values), "the site file's Define lines and the test's values differ"
    for name, value in values.items():
        assert value and not re.search(r"[\s\"'\\$]", value), f"{name}: a value Apache would split or expand"
        text = re.sub(rf"^Define {name} .*$", lambda _m, n=name, v=value: f"Define {n} {v}", text, flags=re.M)
    for line in without:
        assert text.count(line + "\n") == 1, line
        text = text.replace(line + "\n", "")
    return text


def _user_lines() -> str:
    """As root, Apache's children run as www-data (Apache refuses to serve as root); otherwise as us."""
    if os.geteuid() != 0:
        return ""
    user = "www-data" if _exists(pwd.getpwnam, "www-data") else "nobody"
    group = "www-data" if _exists(grp.getgrnam, "www-data") else "nogroup"
    return f"User {user}\nGroup {group}"


def _exists(lookup, name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def run_apache(port: int, values: dict[str, str], *, photos: dict[str, bytes],
               without: tuple[str, ...] = ()) -> Iterator[RunningApache]:
    """Apache on 127.0.0.1:`port` running the site file with `values` (PHOTOS_DIR and PHOTOS_API are
    filled in here), the photo folder holding `photos` and the gallery page, the API answered by
    an ApiHandler; stopped and its folder removed afterwards."""
    installed()
    url = f"http://127.0.0.1:{port}"
    # Under /tmp itself, readable by all: the children (www-data, when run as root) serve the
    # photos from here and cannot enter pytest's owner-only temp folders.
    run = Path(tempfile.mkdtemp(prefix="authserver-test-apache-"))
    run.chmod(0o755)
    try:
        with EchoUpstream(ApiHandler) as api:
            www, folder = run / "www", run / "photos"
            for made in (www, folder):
                made.mkdir(mode=0o755)
                made.chmod(0o755)
            for name, content in photos.items():
                (folder / name).write_bytes(content)
            links = " ".join(f'<img src="{name}" alt="{name}">' for name in sorted(photos))
            sign_out = "/oidc/callback?logout=" + quote(url + "/", safe="")
            (folder / "index.shtml").write_text(GALLERY_PAGE.format(photos=links, sign_out=sign_out))
            (www / "index.html").write_text(SIGNED_OUT_PAGE)
            for path in (*folder.iterdir(), www / "index.html"):
                path.chmod(0o644)
            site = site_file({**values, "PHOTOS_DIR": str(folder), "PHOTOS_API": f"http://127.0.0.1:{api.port}"},
                             without=without)
            # The site file holds the client secrets: readable by its owner only (Apache reads it as root).
            _write_private(run / "site.conf", site)
            modules = "\n".join(f"LoadModule {name}_module {MODULES}/mod_{name}.so" for name in LOADED)
            _write_private(run / "apache2.conf", WRAPPER.format(
                run=run, port=port, user=_user_lines(), modules=modules, www=www, photos=folder))
            log = run / "error.log"
            with open(log, "ab") as output:
                process = subprocess.Popen([str(APACHE), "-f", str(run / "apache2.conf"), "-DFOREGROUND"],
                                           stdout=output, stderr=subprocess.STDOUT, cwd=run, env=_apache_env())
            try:
                wait_for_port(port, process, log)
                yield RunningApache(url=url, log=log)
            finally:
                stop(process)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text)


def _apache_env() -> dict[str, str]:
    """No proxy settings: mod_auth_openidc's calls to authserver go straight to loopback."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C"}
