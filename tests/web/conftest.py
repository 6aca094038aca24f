"""Fixtures for the web-wide qualities: errors, headers, logs."""

from __future__ import annotations

import io
import logging

import pytest

from authserver import logs
from authserver.logs import JsonFormatter
from tests.helpers.logs import CapturedLogs


@pytest.fixture
def json_logs():
    """Everything every logger writes at DEBUG and up, formatted as in production (JSON lines): the
    app's own lines (access lines included) from its handler, the libraries' from the root logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda record: not record.name.startswith("authserver"))  # written by the app's handler
    root, ours = logging.getLogger(), logging.getLogger("authserver")
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    previous = logs.HANDLER.setStream(stream)
    try:
        yield CapturedLogs(stream)
    finally:
        logs.HANDLER.setStream(previous)
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
