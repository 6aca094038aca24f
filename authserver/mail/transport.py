"""Handing one message to the relay with the standard library: STARTTLS, TLS, or plain to loopback."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

from ..settings import SmtpAddress


class SmtpTransport:
    """One connection per message: a handful of messages a minute does not need a pool, and a
    relay that dropped an idle connection never makes a send fail."""

    def __init__(self, address: SmtpAddress, *, timeout: int, ca_file: Path | None = None):
        self.address = address
        self.timeout = timeout
        self.ca_file = ca_file

    def _tls(self) -> ssl.SSLContext:
        # Certificates and host names checked as a browser would; a private CA only when named.
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def send(self, message: EmailMessage) -> None:
        """Deliver to the relay or raise (smtplib.SMTPException, OSError, ssl.SSLError)."""
        address = self.address
        if address.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(address.host, address.port, timeout=self.timeout, context=self._tls())
        else:
            smtp = smtplib.SMTP(address.host, address.port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            if address.scheme == "smtp":
                # STARTTLS is required, never optional: a relay (or someone in between) that does not
                # offer it gets no password and no link.
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("the relay does not offer STARTTLS")
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if address.username:
                smtp.login(address.username, address.password or "")
            smtp.send_message(message)


def describe_failure(exc: BaseException) -> str:
    """What a log line and the outbox row say about a failed send: the kind of failure and the SMTP
    code, never the relay's reply text (it may echo addresses or credentials) or the message."""
    code = getattr(exc, "smtp_code", None)
    return f"{type(exc).__name__}" + (f" (SMTP {code})" if code else "")
