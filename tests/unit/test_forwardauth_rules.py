import json

import pytest

from authserver.access_rules import (
    AccessRules,
    RuleError,
    address_in,
    allowed_redirect,
    load_rules,
    normalise_path,
    parse_host_patterns,
    parse_networks,
)
from authserver.forwardauth.service import header_value
from authserver.settings import Settings, SettingsError

RULES = [
    {"host": "photos.test", "path": "/share", "policy": "bypass"},
    {"host": "photos.test", "path": ["/admin", "/settings/"], "policy": "two_factor", "groups": ["admins"]},
    {"host": ".photos.test", "policy": "one_factor", "api_keys": False},
    {"host": ["secret.test", "vault.test"], "policy": "deny"},
]


def rules(default="one_factor") -> AccessRules:
    return load_rules(json.dumps(RULES), default, base=None)


@pytest.mark.parametrize(
    "host,path,policy",
    [
        ("photos.test", "/share", "bypass"),
        ("photos.test", "/share/album/1", "bypass"),
        ("photos.test", "/shared", "one_factor"),  # whole segments only: the .photos.test rule
        ("photos.test", "/admin", "two_factor"),
        ("photos.test", "/settings", "two_factor"),
        ("PHOTOS.TEST", "/admin/users", "two_factor"),
        ("photos.test", "/administrator", "one_factor"),
        ("upload.photos.test", "/admin", "one_factor"),  # the /admin rule is for photos.test only
        ("photos.test.evil", "/", "default"),
        ("vault.test", "/", "deny"),
        (None, "/", "default"),
    ],
)
def test_first_matching_rule_wins_else_the_default(host, path, policy):
    expected = "two_factor" if policy == "default" else policy
    assert rules(default="two_factor").match(host, path).policy == expected


def test_default_policy_applies_when_nothing_matches():
    assert rules("deny").match("elsewhere.test", "/").policy == "deny"
    assert load_rules("", "two_factor", base=None).match("photos.test", "/").policy == "two_factor"


def test_rule_fields_are_parsed():
    admin = rules().match("photos.test", "/admin")
    assert admin.groups == {"admins"} and admin.api_keys
    assert not rules().match("a.photos.test", "/").api_keys


@pytest.mark.parametrize(
    "uri,path",
    [
        ("/admin", "/admin"),
        ("/%61dmin/x", "/admin/x"),
        ("/x/../admin", "/admin"),
        ("//admin//users/", "/admin/users"),
        ("/./admin?x=/share", "/admin"),
        ("/../../admin", "/admin"),
        ("", "/"),
    ],
)
def test_paths_are_normalised_before_matching(uri, path):
    assert normalise_path(uri) == path


def test_rules_load_from_json_and_toml_files(tmp_path):
    (tmp_path / "rules.json").write_text(json.dumps({"rules": RULES}))
    (tmp_path / "rules.toml").write_text(
        '[[rules]]\nhost = "photos.test"\npath = "/share"\npolicy = "bypass"\n\n'
        '[[rules]]\nhost = ".photos.test"\npolicy = "two_factor"\napi_keys = false\n'
    )
    assert load_rules("rules.json", "one_factor", base=tmp_path).match("photos.test", "/admin").policy == "two_factor"
    from_toml = load_rules(str(tmp_path / "rules.toml"), "one_factor", base=None)
    assert [r.policy for r in from_toml.rules] == ["bypass", "two_factor"]


def test_the_shipped_example_rules_load():
    from authserver.settings import DEFAULTS_FILE

    example = load_rules("config/forward-auth.example.toml", "one_factor", base=DEFAULTS_FILE.parent.parent)
    assert example.match("photos.example.com", "/admin").policy == "two_factor"


@pytest.mark.parametrize(
    "value,message",
    [
        ('[{"policy": "sometimes"}]',
         'rule 1: policy must be one of bypass, one_factor, two_factor, deny (got "sometimes")'),
        ('[{"policy": "bypass"}, {"policy": "deny", "hosts": "x"}]', 'rule 2: unknown key "hosts"'),
        ('[{"policy": "deny", "host": "bad host"}]', 'rule 1: "bad host" is not a host name'),
        ('[{"policy": "deny", "path": "admin"}]', 'rule 1: path "admin" must be a path prefix'),
        ('[{"policy": "one_factor", "groups": []}]', "rule 1: groups must be a non-empty string or list"),
        ('[{"policy": "one_factor", "api_keys": "no"}]', "rule 1: api_keys must be true or false"),
        ('[{"policy": "deny", "path": "/admin", "case_sensitive": "no"}]',
         "rule 1: case_sensitive must be true or false"),
        ('[{"policy": "bypass", "groups": "admins"}]', "rule 1: groups mean nothing with policy bypass"),
        ('["deny"]', "rule 1: must be an object"),
        ('{"rules": 3}', "the rules must be a list"),
        ("[{", "inline JSON is not valid JSON"),
        ("rules.yaml", "must end in .json or .toml"),
        ("missing.json", "cannot read"),
    ],
)
def test_bad_rules_are_refused_with_one_line(tmp_path, value, message):
    (tmp_path / "rules.yaml").write_text("rules: []")
    with pytest.raises(RuleError) as caught:
        load_rules(value, "one_factor", base=tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("FORWARD_AUTH_RULES", '[{"policy": "maybe"}]', "AUTHSERVER_FORWARD_AUTH_RULES: rule 1: policy must be one of"),
        ("FORWARD_AUTH_DEFAULT_POLICY", "sometimes", "AUTHSERVER_FORWARD_AUTH_DEFAULT_POLICY must be one of"),
        ("FORWARD_AUTH_DOMAINS", "photos.test,https://evil.test", "AUTHSERVER_FORWARD_AUTH_DOMAINS:"),
        ("TRUSTED_PROXIES", "10.0.0.1/8", "AUTHSERVER_TRUSTED_PROXIES:"),
        ("FORWARD_AUTH_REDIRECT", "always", "AUTHSERVER_FORWARD_AUTH_REDIRECT must be one of rd, browsers"),
        ("SESSION_COOKIE_DOMAIN", "evil.test",
         "AUTHSERVER_SESSION_COOKIE_DOMAIN must be the issuer's host or a parent"),
    ],
)
def test_bad_forward_auth_settings_stop_start_up(tmp_path, name, value, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AUTHSERVER_INSTANCE_PATH": str(tmp_path), f"AUTHSERVER_{name}": value})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_forward_auth_settings_parse(tmp_path):
    settings = Settings.from_env(
        {
            "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
            "AUTHSERVER_ISSUER": "https://auth.photos.test",
            "AUTHSERVER_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
            "AUTHSERVER_FORWARD_AUTH_DOMAINS": "photos.test,.gallery.test",
            "AUTHSERVER_FORWARD_AUTH_RULES": json.dumps(RULES),
            "AUTHSERVER_FORWARD_AUTH_DEFAULT_POLICY": "deny",
            "AUTHSERVER_SESSION_COOKIE_DOMAIN": "photos.test",
        }
    )
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::/8"]
    assert [str(p) for p in settings.forward_auth_domains] == ["photos.test", ".gallery.test"]
    assert len(settings.forward_auth_rules.rules) == 4
    assert settings.forward_auth_rules.match("other.test", "/").policy == "deny"
    assert settings.session_cookie_domain == "photos.test"


def test_defaults_trust_no_proxy(tmp_path):
    settings = Settings.from_env({"AUTHSERVER_INSTANCE_PATH": str(tmp_path)})
    assert settings.trusted_proxies == ()
    assert settings.forward_auth_domains == ()
    assert settings.forward_auth_rules.rules == ()
    assert settings.forward_auth_rules.default_policy == "one_factor"


@pytest.mark.parametrize(
    "address,trusted",
    [("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.1.2.3", True),
     ("127.0.0.2", False), ("192.0.2.1", False), ("", False), (None, False), ("not-an-ip", False)],
)
def test_trusted_proxy_addresses(address, trusted):
    assert address_in(address, parse_networks("127.0.0.1/32,::1/128,10.0.0.0/8")) is trusted


DOMAINS = parse_host_patterns("photos.test,.gallery.test")


@pytest.mark.parametrize(
    "url,allowed",
    [
        ("https://photos.test/album/1?x=y", True),
        ("http://photos.test:8080/", True),
        ("https://gallery.test/", True),
        ("https://a.b.gallery.test/x", True),
        ("https://PHOTOS.TEST/", True),
        ("https://sub.photos.test/", False),  # exact host only
        ("https://photos.test.evil.test/", False),
        ("https://evilgallery.test/", False),
        ("https://photos.test@evil.test/", False),
        ("https://evil.test@photos.test/", False),  # userinfo refused outright
        ("javascript://photos.test/%0aalert(1)", False),
        ("ftp://photos.test/", False),
        ("//photos.test/", False),
        ("/local/path", False),
        ("https://photos.test\\@evil.test/", False),
        ("https://photos.test/\nSet-Cookie:x", False),
        ("https://photos.test:bad/", False),
        ("", False),
    ],
)
def test_next_urls_only_to_configured_domains(url, allowed):
    assert allowed_redirect(url, DOMAINS) is allowed


def test_no_domains_configured_means_no_absolute_next():
    assert not allowed_redirect("https://photos.test/", ())


def test_header_values_carry_utf8_and_never_a_line_break():
    assert header_value("Zoë 山田").encode("latin-1").decode("utf-8") == "Zoë 山田"
    assert header_value("a\r\nSet-Cookie: x") == "aSet-Cookie: x"
