"""Broker fixtures: a live server (issuer = its own URL, clock the test moves) and its user alice
(helpers: tests/helpers/broker.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from authserver import create_app
from authserver.clock import FixedClock
from tests.helpers.broker import BrokerLive
from tests.helpers.factories import make_user
from tests.helpers.servers import serve_with_own_issuer
from tests.helpers.settings import make_settings


@pytest.fixture
def live(backend, database_urls, tmp_path):
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))

    def make_app(url):
        return create_app(make_settings(tmp_path, database_urls[backend], issuer=url), clock=clock)

    with serve_with_own_issuer(make_app) as (app, url):
        yield BrokerLive(app, url, app.extensions["authserver"], clock)


@pytest.fixture
def alice(live):
    return make_user(live.services, "alice", name="Alice Liddell", groups=["family"])
