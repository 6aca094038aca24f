"""The client's address from forwarding headers: attacks on the parser (authserver/addresses.py)."""

from __future__ import annotations

import pytest

from authserver.access_rules import parse_networks
from authserver.addresses import PEER_KEY, ClientAddress, client_address

PROXIES = parse_networks("127.0.0.1/32, 10.0.0.0/8, ::1/128")


def environ(peer: str = "127.0.0.1", **headers: str) -> dict:
    return {"REMOTE_ADDR": peer, **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}}


@pytest.mark.parametrize(("env", "expected"), [
    # Not from a trusted proxy: every header is ignored.
    (environ("203.0.113.9", x_forwarded_for="1.2.3.4"), "203.0.113.9"),
    (environ("203.0.113.9", forwarded="for=1.2.3.4"), "203.0.113.9"),
    (environ("203.0.113.9", x_real_ip="1.2.3.4"), "203.0.113.9"),
    # From a trusted proxy: the right-most hop that is not a proxy.
    (environ(x_forwarded_for="1.2.3.4"), "1.2.3.4"),
    (environ(x_forwarded_for="6.6.6.6, 1.2.3.4"), "1.2.3.4"),  # the client's own forged entry is left of it
    (environ(x_forwarded_for="6.6.6.6, 1.2.3.4, 10.0.0.5"), "1.2.3.4"),  # a second proxy hop is skipped
    (environ(x_forwarded_for="10.0.0.7, 10.0.0.5"), "10.0.0.7"),  # all proxies: the farthest one
    (environ(x_forwarded_for="1.2.3.4:5678"), "1.2.3.4"),
    (environ(x_forwarded_for="[2001:db8::1]:443"), "2001:db8::1"),
    (environ(x_forwarded_for="::ffff:1.2.3.4"), "1.2.3.4"),
    # A hop that is not an address stops the walk at the nearest proxy known to be genuine.
    (environ(x_forwarded_for="1.2.3.4, garbage"), "127.0.0.1"),
    (environ(x_forwarded_for="1.2.3.4, 10.0.0.5, unknown"), "127.0.0.1"),
    (environ(x_forwarded_for="unknown, 10.0.0.5"), "10.0.0.5"),
    (environ(x_forwarded_for="1.2.3.4\x00, 5.6.7.8"), "5.6.7.8"),
    (environ(x_forwarded_for="5.6.7.8, 1.2.3.4\r\nX-Evil: 1"), "127.0.0.1"),
    (environ(x_forwarded_for=""), "127.0.0.1"),
    (environ(x_forwarded_for=" , ,"), "127.0.0.1"),
    # RFC 7239 Forwarded comes first, quoted IPv6 with a port included.
    (environ(forwarded='for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"', x_forwarded_for="9.9.9.9"),
     "2001:db8:cafe::17"),
    (environ(forwarded="For=192.0.2.43"), "192.0.2.43"),
    (environ(forwarded="for=unknown"), "127.0.0.1"),
    (environ(forwarded="for=_hidden"), "127.0.0.1"),
    (environ(forwarded="proto=https"), "127.0.0.1"),
    (environ(forwarded='for="1.2.3.4'), "1.2.3.4"),
    # X-Real-IP last.
    (environ(x_real_ip="1.2.3.4"), "1.2.3.4"),
    (environ(x_real_ip="not an address"), "127.0.0.1"),
    # A padded chain: only the last 32 hops are looked at.
    (environ(x_forwarded_for=", ".join(["6.6.6.6"] + ["10.0.0.1"] * 40)), "10.0.0.1"),
])
def test_the_client_address(env, expected):
    assert client_address(env, PROXIES) == expected


def test_without_trusted_proxies_nothing_is_read():
    assert client_address(environ(x_forwarded_for="1.2.3.4"), ()) == "127.0.0.1"


def test_the_layer_keeps_the_peer_for_forward_auth():
    seen = {}

    def app(env, start_response):
        seen.update(env)
        return []

    ClientAddress(app, PROXIES)(environ(x_forwarded_for="6.6.6.6, 1.2.3.4"), None)
    assert seen["REMOTE_ADDR"] == "1.2.3.4" and seen[PEER_KEY] == "127.0.0.1"
    ClientAddress(app, ())(environ("198.51.100.2", x_forwarded_for="1.2.3.4"), None)
    assert seen["REMOTE_ADDR"] == "198.51.100.2" and seen[PEER_KEY] == "198.51.100.2"
