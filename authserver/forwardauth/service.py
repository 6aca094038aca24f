"""Forward-auth decisions: which rule covers the original request, and may this identity pass it.

Everything here is in memory: the rules were parsed at start-up, and the
only database read of a forward-auth request is the identity resolution
(`assess` asks for it only when the rule depends on it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from ..access_rules import (
    AccessRule,
    AccessRules,
    HostPattern,
    IPNetwork,
    address_in,
    allowed_redirect,
    normalise_path,
)
from ..errors import DomainError
from ..identity import AuthenticationFailed, Identity
from ..throttle import TooManyAttempts

MAX_URL_LENGTH = 8192
_HOST_CHARS = re.compile(r"^[a-z0-9.-]+$")
# Header values reach the upstream verbatim: no control characters, ever.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ALLOW = "allow"
LOGIN = "login"  # nobody is logged in: 401, or a redirect to the login page
STEP_UP = "step_up"  # logged in, but without the second factor the rule asks for
FORBIDDEN = "forbidden"  # logged in (or the rule denies everyone): 403


class BadForwardedRequest(DomainError):
    """A trusted proxy sent an original URL that cannot be parsed; the message names the header."""


@dataclass(frozen=True)
class Target:
    """The request the proxy is asking about."""

    url: str  # as the browser asked for it; a candidate for `next`
    host: str  # lower case, without port
    path: str  # normalised, for rule matching


@dataclass(frozen=True)
class Decision:
    verdict: str
    description: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == ALLOW


@dataclass(frozen=True)
class Verdict:
    target: Target | None
    rule: AccessRule
    decision: Decision
    identity: Identity | None = None
    failure: AuthenticationFailed | None = None


class ForwardAuthService:
    """Answers reverse proxies: parses the original URL, picks the rule, judges the identity."""

    def __init__(
        self,
        rules: AccessRules,
        trusted_proxies: Sequence[IPNetwork],
        domains: Sequence[HostPattern],
        issuer: str,
    ):
        self.rules = rules
        self.trusted_proxies = tuple(trusted_proxies)
        self.domains = tuple(domains)
        self.login_page = issuer.rstrip("/") + "/login"

    def target(self, peer: str | None, headers: Mapping[str, str]) -> Target | None:
        """The original request, from forwarding headers, only when a trusted proxy sent them.

        Anyone else could claim any URL: their headers are ignored, so they can
        neither pick a laxer rule nor plant a `next` for the login page.
        """
        if not address_in(peer, self.trusted_proxies):
            return None
        original = headers.get("X-Original-URL")
        if original:
            return parse_target(original, "X-Original-URL")
        host = headers.get("X-Forwarded-Host")
        if not host:
            return None
        proto = headers.get("X-Forwarded-Proto")
        if not proto:
            raise BadForwardedRequest("X-Forwarded-Host came without X-Forwarded-Proto; have the proxy send both.")
        uri = headers.get("X-Forwarded-Uri") or "/"
        if not uri.startswith("/"):
            raise BadForwardedRequest("X-Forwarded-Uri must be the original path and query, starting with /.")
        return parse_target(f"{proto}://{host}{uri}", "X-Forwarded-Proto/Host/Uri")

    def rule_for(self, target: Target | None) -> AccessRule:
        """The first rule covering the target; with no (trusted) target, the default policy."""
        if target is None:
            return self.rules.match(None, "/")
        return self.rules.match(target.host, target.path)

    def decide(self, rule: AccessRule, identity: Identity | None) -> Decision:
        if rule.policy == "deny":
            return Decision(FORBIDDEN, "Access to this address is denied to everyone.")
        if rule.policy == "bypass":
            return Decision(ALLOW)
        if identity is None:
            return Decision(LOGIN, "Log in, or send an API key or a bearer access token.")
        if identity.auth_method == "api_key" and not rule.api_keys:
            return Decision(FORBIDDEN, "API keys are not accepted here; log in with your password instead.")
        if rule.groups and not rule.groups.intersection(identity.profile.groups or ()):
            return Decision(FORBIDDEN, "Your account is not in a group allowed here; ask an administrator.")
        if rule.policy == "two_factor" and not has_second_factor(identity):
            return Decision(STEP_UP, "This address needs two-factor login; log in again with your one-time code.")
        return Decision(ALLOW)

    def assess(self, peer: str, headers: Mapping[str, str],
               resolve: Callable[[Target | None], Identity | None]) -> Verdict:
        """The decision for one forward-auth request: its target, the rule, who is asking.

        `resolve(target)` answers the caller's identity (raising AuthenticationFailed); it is
        only asked when the rule depends on it. Raises BadForwardedRequest for unusable headers.
        """
        target = self.target(peer, headers)
        rule = self.rule_for(target)
        identity, failure = None, None
        if rule.policy not in ("bypass", "deny"):
            try:
                identity = resolve(target)
            except AuthenticationFailed as exc:
                failure = exc
            except TooManyAttempts as exc:
                # Bad credentials from an address past its limit: still "not authenticated" (401),
                # since nginx auth_request turns any status but 2xx, 401 and 403 into a 500.
                failure = AuthenticationFailed(exc.description, "too_many_requests", exc.retry_after)
        return Verdict(target, rule, self.decide(rule, identity), identity, failure)

    def login_url(self, target: Target | None) -> str:
        """The login page, with `next` only when the original URL is on an allowed domain."""
        if target is not None and allowed_redirect(target.url, self.domains):
            return f"{self.login_page}?{urlencode({'next': target.url})}"
        return self.login_page


def has_second_factor(identity: Identity) -> bool:
    # API keys never ask for TOTP (DESIGN.md); a rule that wants a person's
    # second factor refuses them with `api_keys: false`.
    if identity.auth_method == "api_key":
        return True
    return "otp" in identity.amr or "mfa" in identity.amr


def parse_target(url: str, source: str) -> Target:
    if len(url) > MAX_URL_LENGTH or _CONTROL.search(url) or " " in url or "\\" in url:
        raise BadForwardedRequest(f"{source} is not a plain URL (too long, or with spaces or control characters).")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise BadForwardedRequest(f"{source} is not a valid URL.") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or not valid_host(host):
        raise BadForwardedRequest(f"{source} must give an http(s) URL with a host name and no user name.")
    if parts.path and not parts.path.startswith("/"):
        raise BadForwardedRequest(f"{source} has a path that does not start with /.")
    return Target(url=url, host=host.rstrip("."), path=normalise_path(parts.path or "/"))


def valid_host(host: str) -> bool:
    if _HOST_CHARS.fullmatch(host):
        return True
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


REMOTE_HEADERS = ("Remote-User", "Remote-Email", "Remote-Name", "Remote-Groups", "Remote-Auth-Method")


def remote_headers(identity: Identity | None) -> dict[str, str]:
    """The `Remote-*` headers the proxy copies onto the upstream request.

    Always all five, empty when nobody is identified (a bypass rule): proxies
    that copy a header missing from the answer may otherwise leave the
    client's own value, or (Caddy 2.6) an unexpanded placeholder, in its place.
    """
    if identity is None:
        return dict.fromkeys(REMOTE_HEADERS, "")
    user = identity.profile
    return {
        "Remote-User": header_value(user.username),
        "Remote-Email": header_value(user.email or ""),
        "Remote-Name": header_value(user.name or ""),
        "Remote-Groups": header_value(",".join(user.groups or ())),
        "Remote-Auth-Method": identity.auth_method,
    }


def header_value(text: str) -> str:
    """UTF-8 on the wire (what Authelia-style upstreams expect), never a line break."""
    text = _CONTROL.sub("", text)
    # WSGI header values are latin-1 strings: this carries the UTF-8 bytes unchanged.
    return text.encode("utf-8").decode("latin-1")
