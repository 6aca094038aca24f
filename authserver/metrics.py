"""Prometheus metrics; multi-process aware when PROMETHEUS_MULTIPROC_DIR is set (`authserver serve`)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("authserver_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "authserver_http_request_seconds",
    "HTTP request latency",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# method: the credential (password, password+totp, password+passkey, passkey, api_key); outcome: success or failure.


# The labelled children, found once each: `labels()` takes a lock and builds its key on every call.
_COUNTERS: dict[tuple[str, str, int], Counter] = {}
_LATENCIES: dict[str, Histogram] = {}


# The methods a label may name; any other is "other", so that nobody can add series at will.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def record_request(endpoint: str, method: str, status: int, elapsed: float) -> None:
    """The metrics of one answered request."""
    if method not in METHODS:
        method = "other"
    key = (endpoint, method, status)
    counter = _COUNTERS.get(key)
    if counter is None:
        counter = _COUNTERS[key] = REQUESTS.labels(endpoint, method, str(status))
    counter.inc()
    latency = _LATENCIES.get(endpoint)
    if latency is None:
        latency = _LATENCIES[endpoint] = LATENCY.labels(endpoint)
    latency.observe(elapsed)


LOGINS = Counter("authserver_logins_total", "Login attempts by method and outcome", ["method", "outcome"])


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
