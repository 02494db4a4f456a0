"""One mapping from errors to HTTP: status + {error, message, hint}, never the input itself.

UptendErrors map by class; FastAPI's request validation errors are ConfigErrors (422) that
say where and what is wrong but never echo the value (a 10 MB field must not come back, and
NaN cannot be encoded); Starlette's HTTP errors (404 of an unknown route, 405, 413) take the
same shape, named by status.
"""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from uptend.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    TransientError,
    UptendError,
    VerificationError,
)
from uptend.protocol.errors import ErrorBody

STATUS: dict[type[UptendError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    ConfigError: 422,
    VerificationError: 422,
    AuthError: 401,
    RateLimitedError: 429,
    TransientError: 503,
}
_BY_STATUS: dict[int, type[UptendError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    503: TransientError,
}
SHOWN_ERRORS = 3  # of a validation error's list
SHOWN_CHARS = 160  # of each part of one
SCHEMA_HINT = "the request schema is in the server's /openapi.json (and /docs)"


def responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route's error answers: status -> what it means."""
    return {status: {"description": d, "model": ErrorBody} for status, d in described.items()}


def status_of(error: UptendError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def body(error: type[UptendError], message: str, hint: str = "") -> dict[str, str]:
    return {"error": error.__name__, "message": message, "hint": hint}


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def describe(errors: Sequence[Any]) -> str:
    """Where and what, for the first few of pydantic's errors; never their `input`."""
    parts = []
    for e in errors[:SHOWN_ERRORS]:
        where = ".".join(_short(str(p)) for p in e.get("loc", ()))
        parts.append(f"{where or 'body'}: {_short(str(e.get('msg', 'invalid')))}")
    more = f" (and {len(errors) - SHOWN_ERRORS} more)" if len(errors) > SHOWN_ERRORS else ""
    return "invalid request: " + "; ".join(parts) + more


async def _uptend(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UptendError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(
        body(type(exc), exc.message, exc.hint), status_code=status_of(exc), headers=headers
    )


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(body(ConfigError, describe(exc.errors()), SCHEMA_HINT), status_code=422)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error = _BY_STATUS.get(exc.status_code, ConfigError if exc.status_code < 500 else UptendError)
    hint = getattr(exc, "hint", "")  # bodylimit.TooLarge says which setting to raise
    return JSONResponse(
        body(error, _short(str(exc.detail)), hint), status_code=exc.status_code, headers=exc.headers
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(UptendError, _uptend)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
