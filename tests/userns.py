"""Run a shell script as root of a new user + mount namespace (`unshare`), where even
root gets EROFS from a read-only bind mount and ENOSPC from a small tmpfs."""

import shutil
import subprocess

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]


def allows(script: str) -> bool:
    """Whether `script` succeeds in a fresh user namespace on this machine."""
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run([*UNSHARE, script], capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return done.returncode == 0


def argv(script: str, command: list[str]) -> list[str]:
    """`command` run after `script` (which must end with `exec "$@"`) in a new namespace."""
    return [*UNSHARE, script, "sh", *command]
