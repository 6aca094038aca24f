"""Mail as an operator runs it: `authserver mail test`, `mail drain`, `user create --invite`, and a real
`authserver serve` whose worker thread delivers by itself (started by the first request)."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.helpers.servers import Instance
from tests.helpers.smtp import SMTP_PASSWORD

pytestmark = pytest.mark.live


@pytest.fixture
def inst(tmp_path, smtp):
    inst = Instance(tmp_path / "instance", AUTHSERVER_SMTP_URL=smtp.url,
                    AUTHSERVER_MAIL_FROM="Photos <auth@photos.example>", AUTHSERVER_SMTP_CA_FILE=str(smtp.ca_file))
    upgraded = inst.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return inst


def test_mail_test_sends_through_the_relay(inst, smtp):
    done = inst.cli("mail", "test", "--to", "ops@photos.example", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] is True
    [message] = smtp.messages
    assert message.tls and message.authenticated and message.recipients == ["ops@photos.example"]
    assert "Test message" in message.subject


def test_mail_test_with_the_relay_down_says_why_and_no_secret(inst, smtp):
    smtp.stop()
    done = inst.cli("mail", "test", "--to", "ops@photos.example")
    assert done.returncode == 1
    assert "not sent: ConnectionRefusedError" in done.stdout
    assert SMTP_PASSWORD not in done.stdout + done.stderr


def test_mail_test_when_mail_is_off(tmp_path):
    inst = Instance(tmp_path / "instance")
    assert inst.cli("db", "upgrade").returncode == 0
    done = inst.cli("mail", "test", "--to", "ops@photos.example")
    assert done.returncode == 1 and "does not send mail" in done.stderr


def test_user_create_invite_then_drain(inst, smtp):
    done = inst.cli("user", "create", "carol", "--email", "carol@photos.example", "--invite", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["invited"] is True and "password" not in created
    drained = inst.cli("mail", "drain", "--json")
    assert drained.returncode == 0 and json.loads(drained.stdout)["sent"] == 1
    [message] = smtp.messages
    assert "/invite/" in message.link()
    refused = inst.cli("user", "create", "dave", "--email", "", "--invite")
    assert refused.returncode == 1 and "invitation goes by email" in refused.stderr


def test_a_served_instance_delivers_by_itself(inst, smtp):
    assert inst.cli("user", "create", "alice", "--email", "alice@photos.example", "--password",
                    "correct horse battery staple").returncode == 0
    inst.serve()
    try:
        session = requests.Session()
        page = session.get(inst.url + "/password/forgot", timeout=10)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        answer = session.post(inst.url + "/password/forgot", data={"csrf_token": token,
                                                                    "email": "alice@photos.example"}, timeout=10)
        assert answer.status_code == 200 and "on its way" in answer.text
        [message] = smtp.wait_for(1, timeout=20)
        assert message.link().startswith("/password/reset/")
        log = inst.server_log()
        assert message.link() not in log and SMTP_PASSWORD not in log
    finally:
        inst.stop()
