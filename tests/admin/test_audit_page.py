"""Admin audit log page: filters by actor, action (exact or prefix), target and time; pages by id."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.helpers.factories import make_user
from tests.helpers.html import browser_login, field_error


def actions_listed(html: str) -> list[str]:
    return re.findall(r'<td><a href="/admin/audit\?action=[^"]+">([^<]+)</a></td>', html)


def record(services, action, actor="user:alice", target="user:bob"):
    services.audit.record(action, actor=actor, target=target, commit=True)


def test_filters_by_actor_action_target_and_time(client, services, clock):
    make_user(services, "root", admin=True)
    start = clock.now()
    record(services, "key.mint", target="key:pkid-1")
    record(services, "key.revoke", actor="user:carol", target="key:pkid-1")
    clock.advance(days=2)
    record(services, "user.update")
    browser_login(client, "root")

    def listed(**query):
        response = client.get("/admin/audit", query_string=query)
        assert response.status_code == 200
        return actions_listed(response.text)

    assert listed(actor="user:carol") == ["key.revoke"]
    assert listed(action="key.") == ["key.revoke", "key.mint"]
    assert listed(action="key") == []
    assert listed(target="key:pkid-1", actor="user:alice") == ["key.mint"]
    assert "user.update" not in listed(until=start.strftime("%Y-%m-%d"))
    assert listed(since=(start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"), action="user.") == ["user.update"]


def test_a_bad_time_is_explained_beside_the_field(client, services):
    make_user(services, "root", admin=True)
    browser_login(client, "root")
    response = client.get("/admin/audit", query_string={"since": "yesterday"})
    assert response.status_code == 400
    assert "2026-05-01" in field_error(response.text, "since")
    assert client.get("/admin/audit", query_string={"before": "-3"}).status_code == 400


def test_pages_continue_by_id_with_the_filters_kept(client, services):
    make_user(services, "root", admin=True)
    for n in range(120):
        record(services, "photo.test", target=f"photo:{n}")
    browser_login(client, "root")
    seen = []
    url = "/admin/audit?action=photo.test"
    while url:
        page = client.get(url.replace("&amp;", "&"))
        assert page.status_code == 200
        seen += re.findall(r'target=photo%3A(\d+)"', page.text)
        older = re.search(r'<a href="([^"]+)" rel="next" id="older">', page.text)
        url = older.group(1) if older else None
    assert [int(n) for n in seen] == list(range(119, -1, -1))
