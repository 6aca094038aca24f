"""The outbox: messages written with the change they tell about, sent by a worker thread.

A table, not a queue in memory: a message survives a restart (a worker of any instance sends it
after) and all instances share it. Each send is claimed with a lease by a conditional UPDATE, so
two workers never send one message at the same time; a failure is retried with backoff, at most
MAX_ATTEMPTS times, each failure logged without the body or any link.

Besides messages it holds jobs: work a request leaves to the worker (a password reset's account
look-up), its payload sealed like a body, run by the handler registered for its kind in the
worker's own transaction, together with the messages it queues.
"""

from __future__ import annotations

import json
import logging
import secrets
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from flask import Flask
from sqlalchemy import delete, event, or_, select, update

from ..clock import Clock
from ..crypto import SecretSealer
from ..extensions import db
from ..sealing import SealedColumn, SealError
from .models import OutboxMessage
from .transport import SmtpTransport, describe_failure

log = logging.getLogger("authserver.mail")

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
# A worker that died mid-send leaves its claim; another may take the message after this long.
LEASE = timedelta(minutes=2)
# How long the record of a sent (or abandoned) message is kept.
KEPT = timedelta(days=30)
SEND_FAILURES = (smtplib.SMTPException, OSError, ssl.SSLError)


@dataclass(frozen=True)
class Drained:
    sent: int = 0
    retrying: int = 0
    given_up: int = 0


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … at most an hour between tries."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_RETRY)


class Outbox:
    def __init__(self, transport: SmtpTransport, sender: str, sealer: SecretSealer, clock: Clock):
        self.transport = transport
        self.sender = sender
        self.sealer = sealer
        self.clock = clock
        self.worker: MailWorker | None = None
        self._drains = 0
        # kind -> what the worker does with a job of that kind (given its payload)
        self.jobs: dict[str, Callable[[dict], None]] = {}

    @staticmethod
    def _context(uid: str) -> bytes:
        return b"mail-outbox:" + uid.encode()

    def sealed_columns(self) -> list[SealedColumn]:
        return [SealedColumn(OutboxMessage, "body_sealed", lambda row: self._context(row.uid))]

    def add(self, *, kind: str, recipient: str, subject: str, text: str, html: str) -> OutboxMessage:
        """Queue a message in the caller's transaction; the worker is woken when it commits."""
        assert kind not in self.jobs
        return self._queue(kind, recipient, subject, {"text": text, "html": html})

    def add_job(self, kind: str, payload: dict) -> OutboxMessage:
        """Queue work for the worker in the caller's transaction (see the module's docstring)."""
        assert kind in self.jobs
        return self._queue(kind, "", "", payload)

    def _queue(self, kind: str, recipient: str, subject: str, content: dict) -> OutboxMessage:
        now = self.clock.now()
        uid = secrets.token_hex(16)
        row = OutboxMessage(uid=uid, kind=kind, recipient=recipient, subject=subject[:300],
                            body_sealed=self.sealer.seal(json.dumps(content).encode(), self._context(uid)),
                            created_at=now, next_attempt_at=now, attempts=0, last_error="")
        db.session.add(row)
        if self.worker is not None:
            event.listen(db.session(), "after_commit", lambda _session: self.worker.wake(), once=True)
        return row

    def drain(self, limit: int = 50) -> Drained:
        """Run the jobs that are due, then send the messages that are due (the jobs' own
        included), in this thread; what fails waits for its next try."""
        counts = {"sent": 0, "retrying": 0, "given_up": 0}
        for job_id in self._due(limit, jobs=True):
            self._run_job(job_id)
        for message_id in self._due(limit, jobs=False):
            outcome = self._send_one(message_id)
            if outcome:
                counts[outcome] += 1
        self._drains += 1
        if self._drains % 200 == 0:
            self.sweep()
        return Drained(**counts)

    def _due(self, limit: int, *, jobs: bool) -> list[int]:
        now = self.clock.now()
        kinds = OutboxMessage.kind.in_(list(self.jobs) or [""])
        due = list(db.session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None),
                   OutboxMessage.next_attempt_at <= now,
                   or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
                   kinds if jobs else ~kinds)
            .order_by(OutboxMessage.id).limit(limit)
        ))
        db.session.rollback()
        return due

    def _run_job(self, job_id: int) -> None:
        """One job: its handler's writes and the job's end committed together; a failure is
        retried like a message that failed (the payload is never logged)."""
        if not self._claim(job_id):
            return
        row = db.session.get(OutboxMessage, job_id)
        try:
            payload = json.loads(self.sealer.unseal(row.body_sealed or "", self._context(row.uid)))
            self.jobs[row.kind](payload)
        except SealError as exc:
            db.session.rollback()
            self._failed(db.session.get(OutboxMessage, job_id), f"SealError: {exc}", final=True)
            return
        except Exception as exc:  # a database error, a bug: the job waits for its next try
            db.session.rollback()
            row = db.session.get(OutboxMessage, job_id)
            self._failed(row, type(exc).__name__, final=row.attempts + 1 >= MAX_ATTEMPTS)
            return
        row.attempts += 1
        row.sent_at = self.clock.now()
        row.claimed_until = None
        row.body_sealed = None
        db.session.commit()

    def sweep(self) -> int:
        """Forget messages sent or given up on more than KEPT ago (their bodies are gone already)."""
        before = self.clock.now() - KEPT
        removed = db.session.execute(delete(OutboxMessage).where(
            or_(OutboxMessage.sent_at < before, OutboxMessage.failed_at < before))).rowcount
        db.session.commit()
        return removed

    def _claim(self, message_id: int) -> bool:
        now = self.clock.now()
        claimed = db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None),
                   OutboxMessage.failed_at.is_(None),
                   or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))
            .values(claimed_until=now + LEASE)
        ).rowcount
        db.session.commit()
        return bool(claimed)

    def _send_one(self, message_id: int) -> str | None:
        if not self._claim(message_id):
            return None  # another worker has it
        row = db.session.get(OutboxMessage, message_id)
        try:
            message = self._message(row)
        except SealError as exc:
            return self._failed(row, f"SealError: {exc}", final=True)
        try:
            self.transport.send(message)
        except SEND_FAILURES as exc:
            return self._failed(row, describe_failure(exc), final=row.attempts + 1 >= MAX_ATTEMPTS)
        row.attempts += 1
        row.sent_at = self.clock.now()
        row.claimed_until = None
        row.body_sealed = None  # the links it carried are nobody's business any more
        db.session.commit()
        log.info("mail sent", extra={"mail": {"id": row.id, "kind": row.kind, "attempt": row.attempts}})
        return "sent"

    def _failed(self, row: OutboxMessage, reason: str, *, final: bool) -> str:
        now = self.clock.now()
        row.attempts += 1
        row.last_error = reason[:200]
        row.claimed_until = None
        if final:
            row.failed_at = now
            row.body_sealed = None
        else:
            row.next_attempt_at = now + backoff(row.attempts)
        db.session.commit()
        # Which message and why, never its body, its links or the relay's password.
        log.warning("mail not delivered" + ("; giving up" if final else "; will retry"), extra={"mail": {
            "id": row.id, "kind": row.kind, "attempt": row.attempts, "error": reason,
            "relay": f"{self.transport.address.host}:{self.transport.address.port}",
            "retry_at": None if final else row.next_attempt_at.isoformat()}})
        return "given_up" if final else "retrying"

    def _message(self, row: OutboxMessage) -> EmailMessage:
        body = json.loads(self.sealer.unseal(row.body_sealed or "", self._context(row.uid)))
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = row.recipient
        message["Subject"] = row.subject
        message["Date"] = format_datetime(row.created_at)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2].rstrip(">") or None)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body["text"])
        message.add_alternative(body["html"], subtype="html")
        return message

    def pending(self) -> int:
        return db.session.scalar(select(db.func.count()).select_from(OutboxMessage).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))) or 0


class MailWorker:
    """A daemon thread that drains the outbox: at once when a message is committed in this process,
    and every `interval` seconds for retries and for messages other instances (or an earlier run)
    wrote."""

    def __init__(self, app: Flask, outbox: Outbox, interval: float = 15.0):
        self.app = app
        self.outbox = outbox
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def start(self) -> None:
        with self._starting:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="mail-outbox", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            with self.app.app_context():
                try:
                    self.outbox.drain()
                except Exception as exc:  # a database outage: try again on the next round
                    log.error("mail outbox not drained", extra={"mail": {"error": type(exc).__name__}})
                finally:
                    db.session.remove()
            self._wake.wait(self.interval)
