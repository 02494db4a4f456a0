"""One mapping from UptendError to HTTP: status + {error, message, hint}."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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

STATUS: dict[type[UptendError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    ConfigError: 422,
    VerificationError: 422,
    AuthError: 401,
    RateLimitedError: 429,
    TransientError: 503,
}


def status_of(error: UptendError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def _handle(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UptendError)
    body = {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(body, status_code=status_of(exc), headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(UptendError, _handle)
