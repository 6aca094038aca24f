"""OIDC fixtures: a live server whose issuer is its own URL (helpers: tests/helpers/oidc.py)."""

from __future__ import annotations

import pytest

from authserver import create_app
from tests.helpers.oidc import Live
from tests.helpers.servers import serve_with_own_issuer
from tests.helpers.settings import make_settings


@pytest.fixture
def live(backend, database_urls, tmp_path):
    def make_app(url):
        return create_app(make_settings(tmp_path, database_urls[backend], issuer=url))

    with serve_with_own_issuer(make_app) as (app, url):
        yield Live(app, url, app.extensions["authserver"])
