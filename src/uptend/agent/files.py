"""Durable file operations: after a power cut, the old state or the new one, never a mix.

Every durable write of the agent goes through here (docs/faults.md D33), so the rule
"journal only refers to durable files" is checked in one place.

Every file the agent creates is private to its user (0600), whatever the umask: files are
created with an explicit mode (`write_atomically`, `private_opener`), never with the
umask's leftovers. The agent never changes its umask: the apps it starts inherit it.
"""

import contextlib
import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

from uptend import durable
from uptend.durable import fsync_dir

__all__ = [
    "PRIVATE_FILE",
    "fsync_dir",
    "point_current_at",
    "private_opener",
    "read_current",
    "remove_tree",
    "syncfs",
    "write_atomically",
]

PRIVATE_FILE = 0o600


def write_atomically(path: Path, data: bytes, *, mode: int = PRIVATE_FILE) -> None:
    """`durable.write_atomically`, private to the agent's user unless `mode` says otherwise."""
    durable.write_atomically(path, data, mode=mode)


def private_opener(path: str, flags: int) -> int:
    """An `open(..., opener=)` that creates the file 0600 (umask can only take bits away)."""
    return os.open(path, flags, PRIVATE_FILE)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def syncfs(path: Path) -> None:
    """Flush every dirty page of the filesystem holding `path`: one call instead of N fsyncs.

    Measured on the 891-file bundle: fsync per file costs ~1 s, one syncfs a fraction of it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def point_current_at(app_dir: Path, version: str | None) -> None:
    """Swap `current` to versions/<version> with one rename(2); None removes the link."""
    link = app_dir / "current"
    if version is None:
        link.unlink(missing_ok=True)
    else:
        tmp = app_dir / ".current.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("versions") / version)
        tmp.replace(link)
    fsync_dir(app_dir)  # docs/architecture.md promise 2: the switch itself is durable


def read_current(app_dir: Path) -> str | None:
    """The version `current` points at, or None if there is no (valid) link."""
    link = app_dir / "current"
    try:
        target = link.readlink()
    except OSError:
        return None
    if target.parent != Path("versions") or not (app_dir / target).is_dir():
        return None
    return target.name


def remove_tree(path: Path) -> None:
    """Remove a file or tree if present (staging leftovers)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
