"""GET /healthz, written once: the Flask route and the dispatch before Flask both call `healthz`.

Liveness only (no database): probes ask it every few seconds, so it costs what the
dispatch costs, not Flask's request machinery.
"""

from __future__ import annotations

from werkzeug.wrappers import Request

from ..errors import Answer, json_answer

ALIVE = {"status": "ok"}


def healthz(req: Request) -> Answer:
    return json_answer(200, ALIVE)
