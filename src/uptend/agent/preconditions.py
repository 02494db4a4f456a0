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
from typing import Protocol

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


# Windows: a reboot is pending when one of these says so (Winsitter checks the same keys).
# Pure over a registry reader, so the rule is tested here with a fake one; the reader on a
# Windows host would wrap winreg (not written: no Windows agent yet, see docs/windows.md).
CBS = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending"
WU = r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired"
SESSION = r"SYSTEM\CurrentControlSet\Control\Session Manager"
RENAMES = "PendingFileRenameOperations"


class RegistryReader(Protocol):
    """Read access to HKEY_LOCAL_MACHINE, as much as the pending-reboot rule needs."""

    def key_exists(self, path: str) -> bool: ...

    def value(self, path: str, name: str) -> object | None:
        """The value `name` of key `path` (a REG_MULTI_SZ is a list of str); None if absent."""
        ...


def windows_reboot_pending(registry: RegistryReader) -> str | None:
    """Why Windows waits for a reboot (servicing, Windows Update, files to replace), or None."""
    if registry.key_exists(CBS):
        return "a reboot is pending (Component Based Servicing\\RebootPending)"
    if registry.key_exists(WU):
        return "a reboot is pending (WindowsUpdate\\Auto Update\\RebootRequired)"
    renames = registry.value(SESSION, RENAMES)
    if isinstance(renames, list | tuple) and any(str(r) for r in renames):
        return f"a reboot is pending ({RENAMES}: {len([r for r in renames if r])} entries)"
    if isinstance(renames, str) and renames:
        return f"a reboot is pending ({RENAMES} is set)"
    return None
