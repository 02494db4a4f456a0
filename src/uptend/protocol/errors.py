"""Error bodies on the wire: the server sends {error, message, hint}; clients raise it back.

One parser for the agent (urllib3) and the CLI (httpx): the same UptendError class the server
raised, or, for a body that is not ours, an error chosen by the HTTP status.
"""

import json

from pydantic import BaseModel, ConfigDict, ValidationError

from uptend.errors import BY_NAME, AuthError, TransientError, UptendError


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    error: str
    message: str
    hint: str = ""


def error_from_body(
    status: int, body: bytes, *, path: str = "", credential: str = "credential", hint: str = ""
) -> UptendError:
    """The UptendError an error response (`status` >= 400) to a request for `path` stands for.

    A body that is not an ErrorBody (a proxy, FastAPI's own 422, another server) is an
    AuthError for 401/403 and a TransientError otherwise: an agent can only retry it, and
    `hint` tells a person what to check.
    """
    try:
        parsed = ErrorBody.model_validate_json(body)
    except ValidationError:
        pass
    else:
        return BY_NAME.get(parsed.error, UptendError)(parsed.message, hint=parsed.hint)
    if status in (401, 403):
        return AuthError(f"the server refused the {credential} ({status})", hint=hint)
    try:
        detail = json.dumps(json.loads(body)["detail"])  # FastAPI's validation errors
    except (ValueError, KeyError, TypeError):
        detail = body[:200].decode(errors="replace")
    where = f" to {path}" if path else ""
    return TransientError(f"the server answered {status}{where}: {detail}", hint=hint)
