"""What the JSON log handler captured (the `json_logs` fixture in tests/web/conftest.py)."""

from __future__ import annotations

import io
import json


class CapturedLogs:
    def __init__(self, stream: io.StringIO):
        self._stream = stream

    def text(self) -> str:
        return self._stream.getvalue()

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines()]
