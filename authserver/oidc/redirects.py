"""Redirect URIs: which may be registered, and whether a requested one is a registered one.

Matching compares strings; nothing is parsed and re-assembled (RFC 9700 §4.1.3). A parser
and a browser disagree on URLs such as `http://evil.example\\@127.0.0.1/cb` (WHATWG ends the
authority at the backslash; `urlsplit` does not), so the request URI must *be* a registered
one, character for character. The one allowed difference is RFC 8252 §7.3: for a registered
loopback IP literal (`http://127.0.0.1/cb`, `http://[::1]/cb`) a native app may name the port
it listens on, written as 1 to 65535 in plain digits, and nothing else may change.

`redirect_uri_allowed` is the one function that decides; the authorization endpoint, the
broker and RP-initiated logout (`post_logout_redirect_uri`) all call it. The token endpoint
then compares the code's own redirect URI with the one presented, exactly.

`check_registration` is what registration (CLI, admin console) enforces, so that what is
stored can be matched this way: no wildcard, backslash, userinfo or fragment, plain `http`
only for loopback IP literals (RFC 9700 §2.6), no script-like schemes. Private-use schemes of
native apps (`app.immich:///oauth-callback`, `com.example.app:/cb`) stay allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

MAX_LENGTH = 2000
# A URI scheme (RFC 3986 §3.1), lower case: a request URI must repeat it exactly.
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
# Schemes a browser would run or read locally instead of handing to an app.
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about", "filesystem"})
# A host name of a web redirect URI, lower case (browsers lower-case it; we compare exactly).
_HOST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")


class RedirectUriError(ValueError):
    """A redirect URI cannot be registered; the message says why and what to write instead."""


def valid_port(text: str) -> bool:
    """1 to 65535 in plain digits, without a sign or leading zeros."""
    return bool(_PORT.fullmatch(text)) and int(text) <= 65535


def loopback_host(host: str) -> bool:
    """An IP literal of the loopback interface, written canonically: 127.x.y.z or [::1]."""
    if host == "[::1]":
        return True
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return address.is_loopback and str(address) == host


def _split_web(uri: str) -> tuple[str, str, str, str] | None:
    """(scheme, host, port, rest) of `http(s)://host[:port]rest`, rest starting at `/`, `?` or empty.

    Only for URIs already known to contain no `@`, `\\` or `#`; None if the authority is malformed.
    """
    scheme, sep, tail = uri.partition("://")
    if not sep:
        return None
    end = len(tail)
    for mark in ("/", "?"):
        found = tail.find(mark)
        if found != -1:
            end = min(end, found)
    authority, rest = tail[:end], tail[end:]
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            return None
        host, after = authority[: close + 1], authority[close + 1:]
    else:
        host, colon, port = authority.partition(":")
        after = colon + port
    if after and not (after.startswith(":") and valid_port(after[1:])):
        return None
    return scheme, host, after[1:], rest


def check_registration(uri: str) -> str:
    """The URI as it will be stored, or RedirectUriError naming what is wrong."""
    if not isinstance(uri, str) or not uri:
        raise RedirectUriError("A redirect URI may not be empty.")
    shown = uri if len(uri) <= 200 else uri[:200] + "…"
    if len(uri) > MAX_LENGTH:
        raise RedirectUriError(f"The redirect URI {shown!r} is longer than {MAX_LENGTH} characters.")
    if not uri.isascii() or any(not 0x21 <= ord(c) <= 0x7E for c in uri):
        raise RedirectUriError(
            f"The redirect URI {shown!r} must be printable ASCII without spaces: percent-encode other characters."
        )
    scheme, colon, _ = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        raise RedirectUriError(
            f"The redirect URI {shown!r} must be absolute and start with a lower-case scheme, "
            "like https://gallery.example/callback or app.example:/callback."
        )
    if scheme in FORBIDDEN_SCHEMES:
        raise RedirectUriError(f"The redirect URI scheme {scheme!r} is not allowed.")
    if "#" in uri:
        raise RedirectUriError(f"The redirect URI {shown!r} may not have a fragment (#…).")
    if "*" in uri:
        raise RedirectUriError(
            f"The redirect URI {shown!r} contains '*': wildcards are not supported; register every exact URI."
        )
    if "\\" in uri:
        raise RedirectUriError(f"The redirect URI {shown!r} may not contain a backslash.")
    authority = uri.partition("://")[2]
    authority = re.split(r"[/?]", authority, maxsplit=1)[0] if authority else ""
    if "@" in authority:
        raise RedirectUriError(f"The redirect URI {shown!r} may not carry a user name or password (…@).")
    if scheme not in ("http", "https"):
        return uri  # a native app's private-use scheme
    parts = _split_web(uri)
    if parts is None or not parts[1]:
        raise RedirectUriError(
            f"The redirect URI {shown!r} needs a host and, if any, a port of 1 to 65535, like "
            "https://gallery.example:8443/callback."
        )
    _, host, _, _ = parts
    if not (_HOST_NAME.fullmatch(host) or loopback_host(host) or _ip_literal(host)):
        raise RedirectUriError(
            f"The redirect URI {shown!r} has an unusual host {host!r}: write the host name in lower case "
            "(IPv6 addresses in brackets), without percent-encoding."
        )
    if scheme == "http" and not loopback_host(host):
        raise RedirectUriError(
            f"The redirect URI {shown!r} uses plain http: use https, or for a native app on this device "
            "a loopback IP literal (http://127.0.0.1/callback or http://[::1]/callback; the app may add any port)."
        )
    return uri


def _ip_literal(host: str) -> bool:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return (address.version == 6) == host.startswith("[") and str(address) == text


def redirect_uri_allowed(registered: Iterable[str], requested: object) -> bool:
    """Is `requested` one of the registered URIs, character for character (loopback: any port)?"""
    if not isinstance(requested, str) or not requested or len(requested) > MAX_LENGTH:
        return False
    registered = list(registered or ())
    if requested in registered:
        return True
    if not requested.startswith("http://"):
        return False
    return any(_same_but_port(uri, requested) for uri in registered)


def _same_but_port(registered: str, requested: str) -> bool:
    """RFC 8252 §7.3: `registered` is a loopback URI and `requested` differs only in its port."""
    if not registered.startswith("http://") or "@" in registered or "\\" in registered or "#" in registered:
        return False
    parts = _split_web(registered)
    if parts is None or not loopback_host(parts[1]):
        return False
    _, host, _, rest = parts
    prefix = "http://" + host
    if len(requested) < len(prefix) + len(rest) or not requested.startswith(prefix) or not requested.endswith(rest):
        return False
    middle = requested[len(prefix): len(requested) - len(rest)]
    if middle == "":
        return True
    return middle.startswith(":") and valid_port(middle[1:])
