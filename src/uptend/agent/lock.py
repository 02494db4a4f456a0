"""One agent per data directory, enforced with an exclusive flock on `<dir>/.lock`.

Why: python-tuf's ngclient is single-instance per metadata directory. Two updaters that
persist `timestamp.json` and `root_history/` into the same directory at the same time can
leave it inconsistent (python-tuf#2836), and two drivers would race on one journal. The
second process must stop before it touches anything (docs/faults.md F43).

The lock is advisory and tied to the open file description, so the kernel drops it when the
process dies, even on kill -9: there is no stale lock to clean up after a crash. The holder's
pid is written into the file only to make the conflict message useful; nothing trusts it.
It does not create the directory: callers decide where their data lives.
"""

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from uptend.errors import ConflictError

LOCK_NAME = ".lock"


class DataDirLock:
    """Exclusive, non-blocking lock on a data directory; use it as a context manager.

    Raises:
        ConflictError: On entry, when another process holds the lock.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> Self:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this DataDirLock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise ConflictError(
                f"another uptend agent is already running on {self.directory}{who}",
                hint="wait for it to finish, or stop it; only one agent may use a data directory",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # Informational only: the flock, not this number, is the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Closing the descriptor releases the flock; the file itself stays, so a waiting
        # process never locks an unlinked inode while a third one creates a new file.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        raw = os.pread(fd, 32, 0)
    except OSError:
        return ""
    text = raw.decode("ascii", "replace").strip()
    return text if text.isdigit() else ""
