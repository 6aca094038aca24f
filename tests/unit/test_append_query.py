"""Query parameters added to a registered redirect URI, exactly as registered otherwise."""

import pytest

from authserver.oidc.clients import append_query


@pytest.mark.parametrize(("uri", "params", "expected"), [
    # A logout without `state`: the URI as registered, no stray "?" (seen on 50170db).
    ("https://gallery.example/logged-out", {}, "https://gallery.example/logged-out"),
    ("https://gallery.example/bye", {"state": "s 1"}, "https://gallery.example/bye?state=s+1"),
    ("https://gallery.example/cb?tenant=a", {"code": "c"}, "https://gallery.example/cb?tenant=a&code=c"),
    # Custom schemes keep their empty authority (urlunparse would drop it).
    ("app.immich:///oauth-callback", [("code", "c"), ("state", "s")], "app.immich:///oauth-callback?code=c&state=s"),
])
def test_append_query(uri, params, expected):
    assert append_query(uri, params) == expected
