"""Mail tests: the app sends through a real SMTP server on loopback (STARTTLS, a throwaway
certificate, AUTH), which keeps what it receives. The outbox is drained by the test (`deliver`)
unless a test starts the worker thread."""

from __future__ import annotations

import pytest

from tests.helpers.smtp import SmtpSink, mail_settings


@pytest.fixture
def smtp(tmp_path_factory):
    sink = SmtpSink(tmp_path_factory.mktemp("relay")).start()
    yield sink
    sink.stop()


@pytest.fixture
def settings(backend, database_urls, tmp_path, smtp):
    return mail_settings(tmp_path, database_urls[backend], smtp, smtp_timeout_seconds=5)


@pytest.fixture
def deliver(services, smtp):
    """Drain the outbox now and answer what the relay has received so far."""

    def drain():
        services.mail.outbox.drain()
        return smtp.messages

    return drain
