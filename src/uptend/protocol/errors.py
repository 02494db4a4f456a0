"""Error bodies on the wire: the server sends {error, message, hint}; clients raise it back.

One parser for the agent (http.client) and the CLI (httpx): the same UptendError class the
server raised, or, for a body that is not ours, an error chosen by the HTTP status. Plain
`json`, no pydantic: the resident agent maps errors with it.
"""

import json
from dataclasses import dataclass
from typing import Any

from uptend.errors import BY_NAME, AuthError, TransientError, UptendError


@dataclass(frozen=True, slots=True)
class ErrorBody:
    error: str
    message: str
    hint: str = ""

    @classmethod
    def parse(cls, body: bytes) -> "ErrorBody | None":
        """The ErrorBody `body` holds (unknown keys ignored), or None if it is not one."""
        try:
            raw: Any = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            return None
        if not isinstance(raw, dict):
            return None
        error, message, hint = raw.get("error"), raw.get("message"), raw.get("hint", "")
        if isinstance(error, str) and isinstance(message, str) and isinstance(hint, str):
            return cls(error, message, hint)
        return None


def error_from_body(
    status: int, body: bytes, *, path: str = "", credential: str = "credential", hint: str = ""
) -> UptendError:
    """The UptendError an error response (`status` >= 400) to a request for `path` stands for.

    A body that is not an ErrorBody (a proxy, FastAPI's own 422, another server) is an
    AuthError for 401/403 and a TransientError otherwise: an agent can only retry it, and
    `hint` tells a person what to check.
    """
    parsed = ErrorBody.parse(body)
    if parsed is not None:
        return BY_NAME.get(parsed.error, UptendError)(parsed.message, hint=parsed.hint)
    if status in (401, 403):
        return AuthError(f"the server refused the {credential} ({status})", hint=hint)
    try:
        detail = json.dumps(json.loads(body)["detail"])  # FastAPI's validation errors
    except (ValueError, KeyError, TypeError, RecursionError):
        detail = body[:200].decode(errors="replace")
    where = f" to {path}" if path else ""
    return TransientError(f"the server answered {status}{where}: {detail}", hint=hint)
