"""Structured JSON logs, one object a line, with the request id and never a secret."""

from __future__ import annotations

import json
import logging
import sys
import time

from .layers import current_request

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


_SECOND: tuple[int, str] = (-1, "")  # the last second formatted, and its text: lines come many a second


def utc_time(created: float) -> str:
    """`2026-11-30T11:50:39.123+00:00`: ISO 8601 in UTC, to the millisecond."""
    global _SECOND
    seconds = int(created)
    last, text = _SECOND
    if seconds != last:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _SECOND = (seconds, text)
    return f"{text}.{int((created - seconds) * 1000):03d}+00:00"


# One encoder for every line: `json.dumps(..., default=str)` would build a new one per call.
_ENCODE = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (info := current_request()) is not None:
            entry["request_id"], entry["method"], entry["path"] = info.request_id, info.method, info.path
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key[0] != "_":  # what the call passed in `extra`
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODE(entry)


ACCESS_LOGGER = "authserver.access"
_access = logging.getLogger(ACCESS_LOGGER)


def access_line(status: int, elapsed: float) -> None:
    """The access line of one answered request (path only: queries carry codes), the line the
    formatter would write for `authserver.access`'s record, written straight to the app's JSON
    handler. Through the logging machinery (a record, the logger and handler chain, the
    formatter's walk of the record) it cost a fifth of a hot request's CPU, for one fixed shape."""
    if not _access.isEnabledFor(logging.INFO):
        return
    info = current_request()
    about = "" if info is None else (
        f', "request_id": {_ENCODE(info.request_id)}, "method": {_ENCODE(info.method)}, "path": {_ENCODE(info.path)}'
    )
    line = (f'{{"time": "{utc_time(time.time())}", "level": "INFO", "logger": "{ACCESS_LOGGER}", "message": "request"'
            f'{about}, "status": {int(status)}, "duration_ms": {round(elapsed * 1000, 2)!r}}}\n')
    handler = HANDLER
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    except (OSError, ValueError):  # a closed or broken stream never fails the request (as logging's own)
        pass
    finally:
        handler.release()


# The app's one handler: JSON lines on stderr (a service's journal).
HANDLER = logging.StreamHandler(sys.stderr)
HANDLER.setFormatter(JsonFormatter())


def configure(level: str) -> None:
    # The record attributes no line of ours prints, not gathered for every record (the logging
    # HOWTO's "Optimization"): the caller's file and line (a walk up the stack), thread and
    # process names. A quarter of what an access line cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger("authserver")
    if getattr(root, "_authserver_configured", False):
        root.setLevel(level)
        return
    root.addHandler(HANDLER)
    root.setLevel(level)
    root.propagate = True
    root._authserver_configured = True
