"""The one place that says whose fault a failed fetch or stage is.

release   the signed release itself breaks a rule (archive, declared size, manifest):
          held back here until the operator retries
network   the repository could not be reached: the fetch resumes in place after a backoff
verify    bytes that do not verify (hash, length): dropped, tried again after a backoff
host      this host's problem (disk full, permissions): reported, tried again later
"""

import enum
import errno
from dataclasses import dataclass

from tuf.api.exceptions import RepositoryError

from uptend.errors import ConfigError, TransientError, UptendError, VerificationError


class Fault(enum.StrEnum):
    RELEASE = "release"
    NETWORK = "network"
    VERIFY = "verify"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class Classified:
    fault: Fault
    reason: str


def classify(error: BaseException, *, staging: bool) -> Classified | None:
    """Whose fault `error` is, raised while fetching (staging=False) or staging; None: a bug."""
    match error:
        case ConfigError():  # a signed release with a broken manifest
            return Classified(Fault.RELEASE, error.message)
        case VerificationError() if staging:
            # The bytes were re-hashed just before: the signed release itself breaks an
            # archive rule or its declared size (docs/faults.md B16, B18).
            return Classified(Fault.RELEASE, error.message)
        case TransientError():
            return Classified(Fault.NETWORK, error.message)
        case UptendError():
            return Classified(Fault.VERIFY, error.message)
        case RepositoryError():  # verify_length_and_hashes on a staged file
            return Classified(Fault.VERIFY, f"staged download no longer verifies: {error}")
        case OSError():
            return Classified(Fault.HOST, _os_reason(error))
    return None


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"disk full: {e}"
    return f"{e.strerror or e}: {e.filename or ''}".strip(": ")
