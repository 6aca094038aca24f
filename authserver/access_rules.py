"""Forward-auth access rules, host patterns and trusted proxies: pure code, no Flask, no DB.

Parsed once at start-up from configuration (see `Settings.from_env`); a bad
value raises `RuleError`, which the settings turn into one line naming the
variable. At request time only `AccessRules.match` and `host_allowed` run.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

POLICIES = ("bypass", "one_factor", "two_factor", "deny")
RULE_KEYS = frozenset({"host", "path", "policy", "groups", "api_keys", "case_sensitive"})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A DNS name (ASCII; IDNs in their xn-- form) or an IPv4 literal, lower case.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class RuleError(ValueError):
    """A rule, host pattern or network in the configuration is malformed; the message is one line."""


@dataclass(frozen=True)
class HostPattern:
    """`photos.example.com` matches that host only; `.example.com` matches it and every subdomain."""

    host: str
    subdomains: bool

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        raw = text.strip().lower()
        subdomains = raw.startswith(".")
        host = raw[1:] if subdomains else raw
        if not host or len(host) > 253 or not _HOSTNAME.fullmatch(host):
            raise RuleError(f'"{text}" is not a host name or a .suffix')
        return cls(host, subdomains)

    def matches(self, host: str) -> bool:
        if host == self.host:
            return True
        return self.subdomains and host.endswith("." + self.host)

    def __str__(self) -> str:
        return ("." if self.subdomains else "") + self.host


def parse_host_patterns(text: str) -> tuple[HostPattern, ...]:
    return tuple(HostPattern.parse(part) for part in text.split(",") if part.strip())


def host_allowed(host: str | None, patterns: Iterable[HostPattern]) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    return any(pattern.matches(host) for pattern in patterns)


def allowed_redirect(url: str, patterns: Sequence[HostPattern]) -> bool:
    """An absolute http(s) URL to one of `patterns`, with nothing in it to confuse a browser."""
    if not patterns or not url or len(url) > 4000:
        return False
    if "\\" in url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        return False
    # Userinfo (`https://photos.example@evil.example/`) is refused outright: it
    # exists mainly to make a URL look like it points somewhere it does not.
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return False
    return host_allowed(parts.hostname, patterns)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip()))
        except ValueError:
            raise RuleError(f'"{part.strip()}" is not a CIDR network (like 10.0.0.0/8 or ::1/128)') from None
    return tuple(networks)


def address_in(address: str | None, networks: Iterable[IPNetwork]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def normalise_path(uri: str) -> str:
    """The path the upstream application will see: decoded, without `;` parameters, dot
    segments, `//` or a final `/`.

    Rules match on this form, so `/%61dmin`, `/x/../admin`, `//admin`, `/admin;x=1` and
    `/..;/admin` all meet the rule written for `/admin` (Java servlet containers and others
    drop `;` parameters before routing).
    """
    path = uri.split("?", 1)[0].split("#", 1)[0]
    path = unquote(path, errors="replace")
    segments: list[str] = []
    for segment in path.split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


@dataclass(frozen=True)
class AccessRule:
    hosts: tuple[HostPattern, ...]  # empty: any host
    paths: tuple[str, ...]  # normalised prefixes; empty: any path
    policy: str
    groups: frozenset[str] = frozenset()  # non-empty: the user must be in at least one
    api_keys: bool = True  # false: API-key logins are refused
    # Paths compared case-insensitively (`/ADMIN` meets `/admin`): the default for every rule
    # but bypass, since many upstreams route without regard to case. A bypass rule matches
    # exactly, so that it never opens more than it names.
    case_sensitive: bool = False

    def matches(self, host: str | None, path: str) -> bool:
        if self.hosts and not host_allowed(host, self.hosts):
            return False
        if not self.paths:
            return True
        if not self.case_sensitive:
            path = path.casefold()
            return any(_under(path, prefix.casefold()) for prefix in self.paths)
        return any(_under(path, prefix) for prefix in self.paths)


def _under(path: str, prefix: str) -> bool:
    """Whole path segments only: `/admin` covers `/admin` and `/admin/x`, never `/administrator`."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class AccessRules:
    """An ordered rule list; the first matching rule wins, else the default policy applies."""

    rules: tuple[AccessRule, ...] = ()
    default_policy: str = "one_factor"

    def match(self, host: str | None, path: str) -> AccessRule:
        for rule in self.rules:
            if rule.matches(host, path):
                return rule
        return AccessRule(hosts=(), paths=(), policy=self.default_policy)


def load_rules(value: str, default_policy: str, base: Path) -> AccessRules:
    """Rules from inline JSON, or from a .json/.toml file (a relative path is taken from `base`)."""
    if default_policy not in POLICIES:
        raise RuleError(f'the default policy must be one of {", ".join(POLICIES)} (got "{default_policy}")')
    value = value.strip()
    if not value:
        return AccessRules((), default_policy)
    if value[0] in "[{":
        data = _json(value, "inline JSON")
    else:
        path = Path(value)
        if not path.is_absolute():
            path = base / path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if path.suffix == ".toml":
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise RuleError(f"{path} is not valid TOML: {exc}") from None
        elif path.suffix == ".json":
            data = _json(text, str(path))
        else:
            raise RuleError(f"{path} must end in .json or .toml")
    if isinstance(data, dict):
        unknown = set(data) - {"rules"}
        if unknown:
            raise RuleError(f'unknown top-level key "{min(unknown)}" (expected "rules")')
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise RuleError('the rules must be a list (or an object with a "rules" list)')
    return AccessRules(tuple(parse_rule(item, n) for n, item in enumerate(data, 1)), default_policy)


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RuleError(f"{where} is not valid JSON: {exc}") from None


def parse_rule(item, number: int) -> AccessRule:
    def fail(message: str):
        raise RuleError(f"rule {number}: {message}")

    if not isinstance(item, dict):
        fail("must be an object")
    unknown = set(item) - RULE_KEYS
    if unknown:
        fail(f'unknown key "{min(unknown)}" (allowed: {", ".join(sorted(RULE_KEYS))})')
    policy = item.get("policy")
    if policy not in POLICIES:
        fail(f'policy must be one of {", ".join(POLICIES)} (got {json.dumps(policy)})')
    try:
        hosts = tuple(HostPattern.parse(h) for h in _strings(item.get("host"), "host"))
        paths = tuple(_prefix(p) for p in _strings(item.get("path"), "path"))
        groups = frozenset(_strings(item.get("groups"), "groups"))
    except RuleError as exc:
        fail(str(exc))
    api_keys = item.get("api_keys", True)
    if not isinstance(api_keys, bool):
        fail("api_keys must be true or false")
    if groups and policy in ("bypass", "deny"):
        fail(f"groups mean nothing with policy {policy}")
    case_sensitive = item.get("case_sensitive", policy == "bypass")
    if not isinstance(case_sensitive, bool):
        fail("case_sensitive must be true or false")
    return AccessRule(hosts, paths, policy, groups, api_keys, case_sensitive)


def _strings(value, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise RuleError(f"{name} must be a non-empty string or list of strings")
    return tuple(v.strip() for v in value)


def _prefix(text: str) -> str:
    if not text.startswith("/") or "?" in text or "#" in text:
        raise RuleError(f'path "{text}" must be a path prefix starting with "/"')
    return normalise_path(text)
