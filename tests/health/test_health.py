"""Liveness, readiness and Prometheus metrics in one process."""

from __future__ import annotations

from prometheus_client import REGISTRY

from authserver import create_app
from authserver.throttle import Bucket
from tests.helpers.factories import login, make_user
from tests.helpers.servers import free_port
from tests.helpers.settings import make_settings


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_healthz_and_readyz_answer_ok(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ok", "database": "ok"}


def test_metrics_count_requests_by_endpoint_and_status(client):
    before = sample("authserver_http_requests_total", endpoint="/api/me", method="GET", status="401")
    seconds = sample("authserver_http_request_seconds_count", endpoint="/api/me")
    for _ in range(3):
        client.get("/api/me")
    assert sample("authserver_http_requests_total", endpoint="/api/me", method="GET", status="401") == before + 3
    assert sample("authserver_http_request_seconds_count", endpoint="/api/me") == seconds + 3
    text = client.get("/metrics").text
    assert 'authserver_http_requests_total{endpoint="/api/me",method="GET",status="401"}' in text


def test_unmatched_paths_share_one_label(client):
    before = sample("authserver_http_requests_total", endpoint="unmatched", method="GET", status="404")
    client.get("/no/such/page/1")
    client.get("/no/such/page/2")
    assert sample("authserver_http_requests_total", endpoint="unmatched", method="GET", status="404") == before + 2


def test_metrics_count_logins_by_method_and_outcome(client, services):
    make_user(services, "alice")
    success = sample("authserver_logins_total", method="password", outcome="success")
    failure = sample("authserver_logins_total", method="password", outcome="failure")
    login(client, "alice", "wrong password")
    login(client, "nobody", "wrong password")
    login(client, "alice")
    assert sample("authserver_logins_total", method="password", outcome="failure") == failure + 2
    assert sample("authserver_logins_total", method="password", outcome="success") == success + 1


def test_unreachable_rate_limit_store_is_a_503_not_a_500(tmp_path):
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
                                   redis_url=f"redis://127.0.0.1:{free_port()}/0"))

    def throttled():
        app.extensions["authserver"].throttle.check(Bucket("password:address", "127.0.0.1"))
        return {"checked": True}

    app.add_url_rule("/api/test-only/throttled", "test_throttled", throttled)
    response = app.test_client().get("/api/test-only/throttled")
    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"


def test_an_unknown_method_is_counted_as_other_not_as_a_new_series(client):
    # Found by the black-box review: each made-up method added a series to /metrics for good.
    for made_up in ("X123456", "Y654321", "BREW"):
        client.open("/healthz", method=made_up)
    metrics = client.get("/metrics").text
    assert "X123456" not in metrics and "Y654321" not in metrics and "BREW" not in metrics
    assert 'method="other"' in metrics
