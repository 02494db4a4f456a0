"""Expected failures, split by who must act (python-tuf's RepositoryError/DownloadError idea).

    UptendError                 shown as one line plus a hint, never a traceback
    ├── ConfigError        (2)  the operator must change a setting or an input
    ├── NotFoundError      (3)  the named thing does not exist
    ├── ConflictError      (4)  it exists already / the state forbids it
    ├── AuthError          (7)  missing, wrong or revoked credential
    ├── VerificationError  (5)  signature, hash, length, expiry: never retried quietly
    └── TransientError     (6)  network down, server busy: back off and retry
        └── RateLimitedError    too many failures or enrollments: retry after N seconds

Bugs are not UptendErrors: they crash with a traceback.
"""


class UptendError(Exception):
    """An expected failure: shown as one line and a hint, never a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(UptendError):
    exit_code = 2


class NotFoundError(UptendError):
    exit_code = 3


class ConflictError(UptendError):
    exit_code = 4


class VerificationError(UptendError):
    exit_code = 5


class TransientError(UptendError):
    exit_code = 6


class RateLimitedError(TransientError):
    def __init__(self, message: str, *, hint: str = "", retry_after_s: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class AuthError(UptendError):
    exit_code = 7


BY_NAME: dict[str, type[UptendError]] = {
    cls.__name__: cls
    for cls in (
        UptendError,
        ConfigError,
        NotFoundError,
        ConflictError,
        VerificationError,
        TransientError,
        RateLimitedError,
        AuthError,
    )
}
