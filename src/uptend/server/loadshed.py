"""Load shaping: a bounded count of requests in flight, a hint to slow down, then 503.

The server must not fall over when every agent checks in at once (a restart, a network
back). `InFlight` counts the requests being served (held long-polls excepted: they cost a
future, not work). From `busy_at` on, a check-in's answer carries `retry_after_s`, which the
agent honours as the least wait before its next check-in; at `max_in_flight` a request is
refused at the ASGI level, before any route or database work, with 503 and Retry-After.
"""

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from uptend.errors import TransientError
from uptend.server.errors import body
from uptend.server.settings import MAX_IN_FLIGHT_ENV

EXEMPT = frozenset({"/api/v1/wait", "/healthz"})  # held long-polls; the liveness probe


class InFlight:
    """Requests being served now, against the process's limits."""

    def __init__(self, max_in_flight: int, retry_after_s: int) -> None:
        self.max = max_in_flight
        self.busy_at = max(1, max_in_flight // 2)
        self.retry_after_s = retry_after_s
        self.now = 0
        self.shed = 0  # requests refused so far (the bench and tests read it)

    def retry_after(self) -> int | None:
        """The wait to ask of a check-in answered now: None unless the server is busy."""
        return self.retry_after_s if self.now >= self.busy_at else None


class LoadShed:
    """ASGI middleware: count every request; refuse it with 503 once `max` are in flight."""

    def __init__(self, app: ASGIApp, *, gauge: InFlight) -> None:
        self.app = app
        self.gauge = gauge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        gauge = self.gauge
        if gauge.now >= gauge.max:
            gauge.shed += 1
            await _refuse(send, gauge)
            return
        gauge.now += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gauge.now -= 1


async def _refuse(send: Send, gauge: InFlight) -> None:
    message = f"the server is busy ({gauge.max} requests in flight)"
    hint = f"retry after {gauge.retry_after_s} s; the limit is {MAX_IN_FLIGHT_ENV}"
    payload = json.dumps(body(TransientError, message, hint)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"retry-after", str(gauge.retry_after_s).encode()),
        (b"connection", b"close"),  # the unread body must not be taken for the next request
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
