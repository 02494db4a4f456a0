"""The one place that says whose fault a failed fetch or stage is.

release   the signed release itself breaks a rule (archive, declared size, manifest):
          held back here until the operator retries
network   the repository could not be reached: the fetch resumes in place after a backoff
verify    bytes that do not verify (hash, length): dropped, tried again after a backoff
host      this host's problem (disk full, permissions): reported, tried again later
worker    the worker child died or wrote garbage: tried again after a backoff (a fetch resumes)

The worker child classifies its own failures here and sends the verdict (`reported` turns
it back into an exception in the agent), so this module must not import tuf: the agent
never loads it, and an error of tuf's can only exist in a process that has.
"""

import enum
import errno
import sys
from dataclasses import dataclass

from uptend.errors import ConfigError, TransientError, UptendError, VerificationError


class Fault(enum.StrEnum):
    RELEASE = "release"
    NETWORK = "network"
    VERIFY = "verify"
    HOST = "host"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Classified:
    fault: Fault
    reason: str

    @property
    def resumes(self) -> bool:
        """A fetch that failed this way resumes in place (its bytes so far are good)."""
        return self.fault in (Fault.NETWORK, Fault.WORKER)


class WorkerError(Exception):
    """The worker child died, was killed, or wrote what is not its protocol."""


class ReportedError(Exception):
    """A failure the worker child classified on its side."""

    def __init__(self, classified: Classified) -> None:
        super().__init__(classified.reason)
        self.classified = classified


def reported(fault: str, reason: str) -> Exception:
    """The exception for a child's verdict; an unknown verdict is the worker's failure."""
    try:
        return ReportedError(Classified(Fault(fault), reason))
    except ValueError:
        return WorkerError(f"the worker reported an unknown fault {fault[:40]!r}")


def classify(error: BaseException, *, staging: bool) -> Classified | None:
    """Whose fault `error` is, raised while fetching (staging=False) or staging; None: a bug."""
    match error:
        case ReportedError():
            return error.classified
        case WorkerError():
            return Classified(Fault.WORKER, str(error))
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
        case OSError():
            return Classified(Fault.HOST, _os_reason(error))
    tuf_errors = sys.modules.get("tuf.api.exceptions")
    if tuf_errors is not None and isinstance(error, tuf_errors.RepositoryError):
        # verify_length_and_hashes on a staged file
        return Classified(Fault.VERIFY, f"staged download no longer verifies: {error}")
    return None


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"disk full: {e}"
    return f"{e.strerror or e}: {e.filename or ''}".strip(": ")
