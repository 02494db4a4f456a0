"""A cap on request bodies, enforced at the ASGI level before any route reads a byte.

A body that announces its length (Content-Length) is refused up front when it is too long;
the HTTP server then delivers at most that many bytes, so nothing more needs counting (the
check-in path pays one header lookup). A body without one (chunked) is counted as it
streams, and the read that crosses the cap raises `TooLarge`, answered 413 in the usual
{error, message, hint} shape: no route ever holds more than the cap in memory.
"""

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uptend.errors import ConfigError
from uptend.server.errors import body
from uptend.server.settings import MAX_BODY_ENV, MAX_UPLOAD_ENV


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")
        self.hint = (
            f"send less; the server's limits are {MAX_BODY_ENV} and, for releases, {MAX_UPLOAD_ENV}"
        )


class BodyLimit:
    """Cap every request body at `max_bytes`, or at `larger[(method, path)]` for that route."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, larger: dict[tuple[str, str], int]):
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get((scope["method"], scope["path"]), self.max_bytes)
        length = _content_length(scope)
        if length is None:
            await self.app(scope, _counted(receive, limit), send)
        elif length > limit:
            await _refuse(send, limit)
        else:
            await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # the HTTP server checked its form
    return None


def _counted(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLarge(limit)
        return message

    return counted


async def _refuse(send: Send, limit: int) -> None:
    refusal = TooLarge(limit)
    payload = json.dumps(body(ConfigError, refusal.detail, refusal.hint)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),  # the unread body must not be taken for the next request
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
