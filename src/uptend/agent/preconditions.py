"""Conditions that defer an update without failing it (Winsitter's "reboot pending").

Each check returns None when met, else the reason shown as `deferred: <reason>`. They run
before a download starts; an unmet one is retried at the next poll, never counted as a failure.
"""

import fcntl
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REBOOT_REQUIRED = Path("/var/run/reboot-required")
HEADROOM = 16 << 20  # bytes kept free beyond what the update needs


@dataclass(frozen=True, slots=True)
class Preconditions:
    reboot: bool = True
    disk: bool = True
    commands: tuple[tuple[str, ...], ...] = field(default=())
    reboot_flag: Path = REBOOT_REQUIRED


def pending_reboot(flag: Path) -> str | None:
    if flag.exists():
        return f"a reboot is pending ({flag} exists)"
    if shutil.which("needs-restarting"):
        try:
            done = subprocess.run(
                ["needs-restarting", "-r"], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 1:
            return "a reboot is pending (needs-restarting -r)"
    return None


_FLOCK = "hhqqi4x"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid


def lock_holder(path: Path) -> int | None:
    """The pid holding a write-conflicting fcntl lock on `path` (F_GETLK: never takes it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: nobody can hold it
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
    return None if kind == fcntl.F_UNLCK else int(pid)


def package_lock(admindir: Path) -> str | None:
    """Why dpkg cannot run now: its frontend or database lock held by another process."""
    for name in ("lock-frontend", "lock"):
        if (pid := lock_holder(admindir / name)) is not None:
            return f"the package manager is busy ({admindir / name} held by pid {pid})"
    return None


def disk_space(where: Path, needed: int) -> str | None:
    free = shutil.disk_usage(where).free
    if free < needed + HEADROOM:
        return f"not enough disk space: {needed + HEADROOM} bytes needed, {free} free in {where}"
    return None


def custom(command: tuple[str, ...]) -> str | None:
    try:
        done = subprocess.run(list(command), capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"precondition {' '.join(command)} could not run: {e}"
    if done.returncode != 0:
        return f"precondition {' '.join(command)} exited {done.returncode}"
    return None


def unmet(pre: Preconditions, where: Path, needed_bytes: int) -> str | None:
    """The first unmet precondition, or None."""
    if pre.reboot and (why := pending_reboot(pre.reboot_flag)):
        return why
    if pre.disk and (why := disk_space(where, needed_bytes)):
        return why
    for command in pre.commands:
        if why := custom(command):
            return why
    return None
