"""A tiny HTTP server standing in for a relying party's back-channel logout endpoint."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class LogoutReceiver:
    def __init__(self, statuses=(200,), location: str | None = None):
        """Answers each POST with the next of `statuses` (the last one repeats), with a
        `Location` header when `location` is given; `requests` lists every (method, path)."""
        self.tokens: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.received = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self._statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                receiver.requests.append(("GET", self.path))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                receiver.requests.append(("POST", self.path))
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                receiver.release.wait(30)
                status = receiver._statuses.pop(0) if len(receiver._statuses) > 1 else receiver._statuses[0]
                if status == 200:
                    receiver.tokens.extend(form.get("logout_token", []))
                    receiver.received.set()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/backchannel-logout"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
