"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives: STARTTLS with a throwaway
certificate and AUTH (as a relay on port 587 asks), or implicit TLS, or plain."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.csrf import csrf_token

SMTP_USER, SMTP_PASSWORD = "relay-user", "relay-pa$$word-7Qx"
# A mailed link (built from the issuer): its path.
LINK = re.compile(r"https?://[^/\s\"<>]+(/(?:password/reset|email/verify|invite)/[A-Za-z0-9_-]{43})")


def throwaway_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authserver test relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Received:
    mail_from: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def link(self) -> str:
        """The path of the one link the message carries (in both parts)."""
        paths = set(LINK.findall(self.text))
        assert len(paths) == 1, self.text
        assert paths == set(LINK.findall(self.html.replace("&amp;", "&")))
        return paths.pop()


class _Collector:
    def __init__(self):
        self.messages: list[Received] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,
                                          tls=_encrypted(server, session), authenticated=bool(session.authenticated)))
            self.arrived.notify_all()
        return "250 Message accepted"


def _encrypted(server, session) -> bool:
    """STARTTLS sets the session's ssl; implicit TLS shows on the transport."""
    return session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode() \
        and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


class SmtpSink:
    """`mode`: "starttls" (STARTTLS required, then AUTH), "tls" (implicit TLS, AUTH), "plain"."""

    def __init__(self, folder: Path, mode: str = "starttls", port: int | None = None):
        self.mode = mode
        self.port = port or free_port()
        self.ca_file, key_file = throwaway_certificate(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        self._collector = _Collector()
        options = {"hostname": "127.0.0.1", "port": self.port, "ready_timeout": 5}
        if mode == "starttls":
            options.update(tls_context=context, require_starttls=True, authenticator=_authenticator,
                           auth_require_tls=True)
        elif mode == "tls":
            options.update(ssl_context=context, authenticator=_authenticator, auth_require_tls=False)
        self.controller = Controller(self._collector, **options)

    @property
    def url(self) -> str:
        scheme = {"starttls": "smtp", "tls": "smtps", "plain": "smtp+plain"}[self.mode]
        credentials = "" if self.mode == "plain" else f"{SMTP_USER}:{SMTP_PASSWORD.replace('$', '%24')}@"
        return f"{scheme}://{credentials}127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Received]:
        return list(self._collector.messages)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.recipients]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._collector.arrived:
            while len(self._collector.messages) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{count} messages expected, {len(self._collector.messages)} arrived"
                self._collector.arrived.wait(left)
        return self.messages

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop listening (the relay is down); again is harmless."""
        if self.controller._thread is not None:
            self.controller.stop()


MAIL_FROM = "Photos <auth@photos.example>"


def mail_settings(instance_path: Path, database_url: str, sink: SmtpSink, **extra):
    """Test settings whose mail goes to `sink` (its URL, and its throwaway certificate trusted)."""
    from tests.helpers.settings import make_settings

    return make_settings(instance_path, database_url, smtp_url=sink.url, mail_from=MAIL_FROM,
                         smtp_ca_file=sink.ca_file, **extra)


def follow_link(client, link: str, form_path: str, **fields):
    """Follow a mailed link as a browser does (its landing redirects to the form's page), then
    post that form with its CSRF token and `fields`; the first answer that is not the expected
    step (a refused link, a page that is not served) is returned instead."""
    landing = client.get(link)
    if landing.status_code != 303:
        return landing
    page = client.get(landing.headers["Location"])
    if page.status_code != 200:
        return page
    return client.post(form_path, data={"csrf_token": csrf_token(page.text), **fields})
