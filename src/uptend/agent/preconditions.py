"""Conditions that defer an update without failing it (Winsitter's "reboot pending").

Each check returns None when met, else the reason shown as `deferred: <reason>`. They run
before a download starts; an unmet one is retried at the next poll, never counted as a failure.
"""

import shutil
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
